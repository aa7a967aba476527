//! Lockbox's encodings of typed attributes (`has_encrypted :x, type: …`), for rows written by
//! the Ruby gem and rows it must read.
//!
//! | Lockbox `type:` | codec | Rust value | bytes |
//! |---|---|---|---|
//! | `:string` (default) | [`Text`](super::Text) | `String` | UTF-8 |
//! | `:binary` | [`Binary`](super::Binary) | `Vec<u8>` | raw |
//! | `:boolean` | [`Boolean`] | `bool` | `t` / `f` |
//! | `:integer` | [`Integer`] | `i64` | 8-byte big-endian signed (`pack("q>")`) |
//! | `:float` | [`Float`] | `f64` | 8-byte big-endian IEEE 754 (`pack("G")`) |
//! | `:decimal` | [`Decimal`] | `String` | `BigDecimal#to_s("F")`: `12.5`, `100.0`, `-0.00001` |
//! | `:date` | [`Date`] (feature `chrono`) | `chrono::NaiveDate` | `%Y-%m-%d` |
//! | `:datetime` | [`DateTime`] (feature `chrono`) | `chrono::DateTime<Utc>` | `iso8601(9)` of the UTC time: `2024-01-02T03:04:05.123456789Z` |
//! | `:time` | [`Time`] (feature `chrono`) | `chrono::NaiveTime` (UTC wall time) | `%H:%M:%S.%N` |
//! | `:json` | [`Json`] | [`JsonValue`] (numbers exact) | JSON as ActiveSupport writes it |
//! | `:inet` | [`Inet`] | `(IpAddr, u8)` | family (0 v4, 1 v6), prefix, address padded to 16 bytes |
//!
//! `:hash` and `:array` (YAML) are not supported. A stored `""` of a non-string type reads as
//! `None` (Lockbox never writes one: it stores NULL for those).
//!
//! Source of these rules: the `generate_<attr>_ciphertext` / `decrypt_<attr>_ciphertext`
//! methods in Lockbox's `lib/lockbox/model.rb` (ankane/lockbox), which serialize through
//! ActiveRecord's types first — `Type::DateTime`/`Type::Time` convert to UTC
//! (`ActiveModel::Type::Helpers::TimeValue#serialize`, `getutc` under the default time zone) —
//! and Lockbox's own `test/model_types_test.rb`, which pins the formats
//! (`signed_at.utc.iso8601(9)`, `opens_at.utc.strftime("%H:%M:%S.%N")`, `pack("q>")`, …).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use zeroize::Zeroizing;

use super::Codec;
use crate::error::{Error, Result};

fn exact<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N]> {
    bytes.try_into().map_err(|_| {
        Error::codec(format!(
            "a Lockbox {what} is {N} bytes, got {}",
            bytes.len()
        ))
    })
}

/// `:boolean` — `t` / `f`. Reading is Lockbox's `message = message == "t"`: exactly `t` is
/// true and anything else (`f`, `true`, `1`, `T`, …) is false — not ActiveModel's boolean cast,
/// which Lockbox only applies when writing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Boolean;

impl Codec for Boolean {
    type Value = bool;
    type Input = bool;
    fn encode(input: &bool) -> Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(vec![if *input { b't' } else { b'f' }]))
    }
    fn decode(bytes: &[u8]) -> Result<bool> {
        Ok(bytes == b"t")
    }
    fn empty() -> Result<Option<bool>> {
        Ok(None)
    }
}

/// `:integer` — 8-byte big-endian signed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Integer;

impl Codec for Integer {
    type Value = i64;
    type Input = i64;
    fn encode(input: &i64) -> Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(input.to_be_bytes().to_vec()))
    }
    fn decode(bytes: &[u8]) -> Result<i64> {
        Ok(i64::from_be_bytes(exact::<8>(bytes, "integer")?))
    }
    fn empty() -> Result<Option<i64>> {
        Ok(None)
    }
}

/// `:float` — 8-byte big-endian IEEE 754 double (NaN and infinities kept).
#[derive(Debug, Clone, Copy, Default)]
pub struct Float;

impl Codec for Float {
    type Value = f64;
    type Input = f64;
    fn encode(input: &f64) -> Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(input.to_be_bytes().to_vec()))
    }
    fn decode(bytes: &[u8]) -> Result<f64> {
        Ok(f64::from_be_bytes(exact::<8>(bytes, "float")?))
    }
    fn empty() -> Result<Option<f64>> {
        Ok(None)
    }
}

/// `:decimal` — the number's plain text as Lockbox writes it, `BigDecimal#to_s("F")`: no
/// exponent, no leading zeros, no trailing zeros, at least one fraction digit (`12.50` → `12.5`,
/// `100` → `100.0`, `-00.000010000` → `-0.00001`). Kept as a string so no precision is lost.
/// Input is checked (digits with an optional sign and fraction) and written in that canonical
/// form; `NaN`, `Infinity` and `-Infinity` (which `to_s("F")` writes for those values) pass
/// through both ways.
#[derive(Debug, Clone, Copy, Default)]
pub struct Decimal;

const DECIMAL_SPECIALS: [&str; 3] = ["NaN", "Infinity", "-Infinity"];

/// `(negative, integer digits, fraction digits)` of a plain decimal number.
fn decimal_parts(s: &str) -> Option<(bool, &str, &str)> {
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) if !f.is_empty() => (i, f),
        Some(_) => return None,
        None => (body, ""),
    };
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    (!int.is_empty() && digits(int) && digits(frac)).then_some((negative, int, frac))
}

/// `BigDecimal#to_s("F")` of a plain decimal number.
fn canonical_decimal(s: &str) -> Option<String> {
    if DECIMAL_SPECIALS.contains(&s) {
        return Some(s.to_owned());
    }
    let (negative, int, frac) = decimal_parts(s)?;
    let int = match int.trim_start_matches('0') {
        "" => "0",
        i => i,
    };
    let frac = match frac.trim_end_matches('0') {
        "" => "0",
        f => f,
    };
    Some(format!("{}{int}.{frac}", if negative { "-" } else { "" }))
}

impl Codec for Decimal {
    type Value = String;
    type Input = str;
    fn encode(input: &str) -> Result<Zeroizing<Vec<u8>>> {
        let canonical = canonical_decimal(input).ok_or_else(|| {
            Error::codec(
                "not a decimal number (expected digits with an optional sign and fraction)",
            )
        })?;
        Ok(Zeroizing::new(canonical.into_bytes()))
    }
    fn decode(bytes: &[u8]) -> Result<String> {
        let s = std::str::from_utf8(bytes)
            .map_err(|_| Error::codec("a Lockbox decimal is not UTF-8"))?;
        if !DECIMAL_SPECIALS.contains(&s) && decimal_parts(s).is_none() {
            return Err(Error::codec("a Lockbox decimal is not a decimal number"));
        }
        Ok(s.to_owned())
    }
    fn empty() -> Result<Option<String>> {
        Ok(None)
    }
}

/// `:json` — JSON text; written with ActiveSupport's escaping (`<`, `>`, `&`, U+2028/9).
///
/// Values are [`JsonValue`]s, which keep every number as the text it was written with: Ruby
/// writes integers of any size (`1180591620717411303424`) and shortest round-trip floats
/// (`1.3101333033102623e+20`), and a read-modify-write of a record must not change them.
/// (`serde_json::Value` would turn integers beyond 64 bits into floats; serde_json's
/// `arbitrary_precision` feature would keep them, but it changes how `serde_json::Value`
/// serialises to every other format — the MessagePack bytes of a `serde_json::Value` among them —
/// for every crate of an application, so it is not used.)
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

/// Nesting deeper than this is a `Codec` error (serde_json's own limit).
const JSON_MAX_DEPTH: usize = 128;

/// A JSON value as Lockbox stores it: numbers exact (as written), object members in their
/// stored order (duplicates kept).
///
/// Convert from and to `serde_json::Value` with `From` and [`to_serde_json`](Self::to_serde_json).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonValue {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, as its JSON text.
    Number(JsonNumber),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<JsonValue>),
    /// An object: members in order.
    Object(Vec<(String, JsonValue)>),
}

/// A JSON number kept as its text (valid JSON number syntax), so no digit is lost.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JsonNumber(String);

impl JsonNumber {
    /// The number's JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value as an `i128`, if it is an integer in range (no fraction, no exponent).
    pub fn as_i128(&self) -> Option<i128> {
        self.0.parse().ok()
    }

    /// The nearest `f64` (correctly rounded).
    pub fn as_f64(&self) -> f64 {
        // valid JSON number text is valid Rust float syntax
        self.0.parse().unwrap_or(f64::NAN)
    }

    /// A finite float, written as serde_json writes it (shortest round-trip form); `None` for
    /// NaN and infinities, which JSON cannot hold.
    pub fn from_f64(value: f64) -> Option<Self> {
        serde_json::Number::from_f64(value).map(|n| Self(n.to_string()))
    }

    /// Parse JSON number text; `None` unless `text` is exactly one JSON number.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = matches!(text.as_bytes().first(), Some(b'-' | b'0'..=b'9'))
            && text.as_bytes().last().is_some_and(u8::is_ascii_digit)
            && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
        valid.then(|| Self(text.to_owned()))
    }
}

macro_rules! json_number_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for JsonNumber {
            fn from(v: $t) -> Self {
                Self(v.to_string())
            }
        }
        impl From<$t> for JsonValue {
            fn from(v: $t) -> Self {
                JsonValue::Number(v.into())
            }
        }
    )*};
}
json_number_from_int!(i8, i16, i32, i64, i128, u8, u16, u32, u64, u128);

impl From<bool> for JsonValue {
    fn from(v: bool) -> Self {
        JsonValue::Bool(v)
    }
}

impl From<&str> for JsonValue {
    fn from(v: &str) -> Self {
        JsonValue::String(v.to_owned())
    }
}

impl From<String> for JsonValue {
    fn from(v: String) -> Self {
        JsonValue::String(v)
    }
}

impl From<serde_json::Value> for JsonValue {
    /// Exact: a `serde_json::Value` number is written as serde_json writes it.
    fn from(v: serde_json::Value) -> Self {
        use serde_json::Value as V;
        match v {
            V::Null => JsonValue::Null,
            V::Bool(b) => JsonValue::Bool(b),
            V::Number(n) => JsonValue::Number(JsonNumber(n.to_string())),
            V::String(s) => JsonValue::String(s),
            V::Array(a) => JsonValue::Array(a.into_iter().map(Into::into).collect()),
            V::Object(o) => JsonValue::Object(o.into_iter().map(|(k, v)| (k, v.into())).collect()),
        }
    }
}

impl JsonValue {
    /// As a `serde_json::Value`: integers beyond 64 bits become the nearest float, and of
    /// duplicate object members the last one is kept (serde_json's rules).
    pub fn to_serde_json(&self) -> serde_json::Value {
        use serde_json::Value as V;
        match self {
            JsonValue::Null => V::Null,
            JsonValue::Bool(b) => V::Bool(*b),
            JsonValue::Number(n) => serde_json::from_str(n.as_str()).unwrap_or(V::Null),
            JsonValue::String(s) => V::String(s.clone()),
            JsonValue::Array(a) => V::Array(a.iter().map(Self::to_serde_json).collect()),
            JsonValue::Object(o) => V::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), v.to_serde_json()))
                    .collect(),
            ),
        }
    }

    /// Parse JSON text (what [`Json`] decodes).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let raw: Box<serde_json::value::RawValue> =
            serde_json::from_slice(bytes).map_err(json_error)?;
        Self::from_raw(raw.get(), 0)
    }

    fn from_raw(text: &str, depth: usize) -> Result<Self> {
        if depth > JSON_MAX_DEPTH {
            return Err(Error::codec("JSON nested too deeply"));
        }
        let text = text.trim_matches([' ', '\t', '\n', '\r']);
        Ok(match text.as_bytes().first() {
            Some(b'{') => {
                let members: JsonMembers = serde_json::from_str(text).map_err(json_error)?;
                JsonValue::Object(
                    members
                        .0
                        .into_iter()
                        .map(|(k, v)| Ok((k, Self::from_raw(v.get(), depth + 1)?)))
                        .collect::<Result<_>>()?,
                )
            }
            Some(b'[') => {
                let items: Vec<Box<serde_json::value::RawValue>> =
                    serde_json::from_str(text).map_err(json_error)?;
                JsonValue::Array(
                    items
                        .iter()
                        .map(|v| Self::from_raw(v.get(), depth + 1))
                        .collect::<Result<_>>()?,
                )
            }
            Some(b'"') => JsonValue::String(serde_json::from_str(text).map_err(json_error)?),
            Some(b't') => JsonValue::Bool(true),
            Some(b'f') => JsonValue::Bool(false),
            Some(b'n') => JsonValue::Null,
            // RawValue checked the syntax: what is left is a number
            _ => JsonValue::Number(JsonNumber(text.to_owned())),
        })
    }

    /// Compact JSON (serde_json's formatting), with ActiveSupport's escaping.
    fn write(&self, out: &mut String, depth: usize) -> Result<()> {
        if depth > JSON_MAX_DEPTH {
            return Err(Error::codec("JSON nested too deeply"));
        }
        match self {
            JsonValue::Null => out.push_str("null"),
            JsonValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            JsonValue::Number(n) => out.push_str(n.as_str()),
            JsonValue::String(s) => write_json_string(out, s)?,
            JsonValue::Array(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out, depth + 1)?;
                }
                out.push(']');
            }
            JsonValue::Object(o) => {
                out.push('{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(out, k)?;
                    out.push(':');
                    v.write(out, depth + 1)?;
                }
                out.push('}');
            }
        }
        Ok(())
    }
}

/// A JSON string as serde_json writes it, then ActiveSupport's escapes (these characters can
/// only occur inside strings, so a plain replacement is exact).
fn write_json_string(out: &mut String, s: &str) -> Result<()> {
    let quoted =
        Zeroizing::new(serde_json::to_string(s).map_err(|_| Error::codec("JSON encoding failed"))?);
    for c in quoted.chars() {
        match c {
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    Ok(())
}

fn json_error(e: serde_json::Error) -> Error {
    Error::codec(format!(
        "invalid JSON at line {} column {}",
        e.line(),
        e.column()
    ))
}

/// An object's members in order, values unparsed.
struct JsonMembers(Vec<(String, Box<serde_json::value::RawValue>)>);

impl<'de> serde::Deserialize<'de> for JsonMembers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = JsonMembers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<JsonMembers, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(JsonMembers(members))
            }
        }
        d.deserialize_map(Visit)
    }
}

impl Codec for Json {
    type Value = JsonValue;
    type Input = JsonValue;
    fn encode(input: &JsonValue) -> Result<Zeroizing<Vec<u8>>> {
        let mut out = String::new();
        input.write(&mut out, 0)?;
        Ok(Zeroizing::new(out.into_bytes()))
    }
    fn decode(bytes: &[u8]) -> Result<JsonValue> {
        JsonValue::parse(bytes)
    }
    fn empty() -> Result<Option<JsonValue>> {
        Ok(None)
    }
}

/// `:inet` — an address and its prefix length.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inet;

impl Codec for Inet {
    type Value = (IpAddr, u8);
    type Input = (IpAddr, u8);
    fn encode(input: &(IpAddr, u8)) -> Result<Zeroizing<Vec<u8>>> {
        let mut out = vec![0u8; 18];
        match input.0 {
            IpAddr::V4(a) => {
                if input.1 > 32 {
                    return Err(Error::codec("an IPv4 prefix is at most 32"));
                }
                out[2..6].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                if input.1 > 128 {
                    return Err(Error::codec("an IPv6 prefix is at most 128"));
                }
                out[0] = 1;
                out[2..18].copy_from_slice(&a.octets());
            }
        }
        out[1] = input.1;
        Ok(Zeroizing::new(out))
    }
    fn decode(bytes: &[u8]) -> Result<(IpAddr, u8)> {
        let b = exact::<18>(bytes, "inet")?;
        let (addr, max_prefix) = match b[0] {
            0 => (IpAddr::V4(Ipv4Addr::new(b[2], b[3], b[4], b[5])), 32),
            1 => (
                IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(&b[2..18]).map_err(|_| Error::codec("bad inet"))?,
                )),
                128,
            ),
            _ => return Err(Error::codec("a Lockbox inet has family 0 or 1")),
        };
        // Lockbox reads it with IPAddr#mask(prefix), which refuses a longer prefix (and
        // `encode` refuses to write one)
        if b[1] > max_prefix {
            return Err(Error::codec(format!(
                "a Lockbox inet prefix is at most {max_prefix} for its family"
            )));
        }
        Ok((addr, b[1]))
    }
    fn empty() -> Result<Option<(IpAddr, u8)>> {
        Ok(None)
    }
}

#[cfg(feature = "chrono")]
mod dates {
    use chrono::{Datelike, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};

    use super::*;

    /// Ruby's `strftime("%Y-%m-%d")`: the year padded to 4 digits, no `+` for years past 9999
    /// (chrono's `%Y` writes `+10000`), `-0001` before year 1.
    fn ymd(d: &NaiveDate) -> String {
        let year = if d.year() < 0 {
            format!("-{:04}", d.year().unsigned_abs())
        } else {
            format!("{:04}", d.year())
        };
        format!("{year}-{:02}-{:02}", d.month(), d.day())
    }

    /// The inverse of [`ymd`]: `-?YYYY+-MM-DD`.
    fn parse_ymd(s: &str) -> Option<NaiveDate> {
        let (negative, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let mut parts = body.split('-');
        let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if parts.next().is_some()
            || y.len() < 4
            || y.len() > 6
            || m.len() != 2
            || d.len() != 2
            || !(digits(y) && digits(m) && digits(d))
        {
            return None;
        }
        let year: i32 = y.parse().ok()?;
        NaiveDate::from_ymd_opt(
            if negative { -year } else { year },
            m.parse().ok()?,
            d.parse().ok()?,
        )
    }

    /// `:date` — `%Y-%m-%d` (Lockbox: `message.strftime("%Y-%m-%d")`).
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Date;

    impl Codec for Date {
        type Value = NaiveDate;
        type Input = NaiveDate;
        fn encode(input: &NaiveDate) -> Result<Zeroizing<Vec<u8>>> {
            Ok(Zeroizing::new(ymd(input).into_bytes()))
        }
        fn decode(bytes: &[u8]) -> Result<NaiveDate> {
            std::str::from_utf8(bytes)
                .ok()
                .and_then(parse_ymd)
                .ok_or_else(|| Error::codec("a Lockbox date is not %Y-%m-%d"))
        }
        fn empty() -> Result<Option<NaiveDate>> {
            Ok(None)
        }
    }

    /// `:datetime` — Lockbox writes `message.iso8601(9)` after ActiveRecord converted the time
    /// to UTC: `2024-01-02T03:04:05.123456789Z` (9 fraction digits, `Z`). Reads any offset
    /// (`+01:00`, as a Rails app with `default_timezone = :local` writes) as the same instant.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct DateTime;

    /// Ruby's `strftime("%H:%M:%S.%N")`. A leap second (chrono's nanosecond ≥ 1e9) has no
    /// Ruby form: it is written as the last nanosecond of second 59.
    fn hms_nanos(t: &NaiveTime) -> String {
        format!(
            "{:02}:{:02}:{:02}.{:09}",
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond().min(999_999_999)
        )
    }

    /// `HH:MM:SS[.fraction][Z|±HH:MM]` → (time, offset east of UTC in seconds); no zone is
    /// UTC, as ActiveRecord reads it under its default time zone.
    fn parse_time_and_offset(s: &str) -> Option<(NaiveTime, i32)> {
        let (time, offset) = match s.strip_suffix('Z') {
            Some(t) => (t, 0),
            None => match s.rfind(['+', '-']) {
                None => (s, 0),
                Some(i) => {
                    let (t, off) = s.split_at(i);
                    let sign = if off.starts_with('-') { -1 } else { 1 };
                    let (h, m) = off[1..].split_once(':')?;
                    if h.len() != 2 || m.len() != 2 {
                        return None;
                    }
                    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
                    if h > 23 || m > 59 {
                        return None;
                    }
                    (t, sign * (h * 3600 + m * 60))
                }
            },
        };
        Some((NaiveTime::parse_from_str(time, "%H:%M:%S%.f").ok()?, offset))
    }

    fn parse_datetime(s: &str) -> Option<chrono::DateTime<Utc>> {
        let (date, rest) = s.split_once('T')?;
        let (time, offset) = parse_time_and_offset(rest)?;
        let local = parse_ymd(date)?.and_time(time);
        let utc = local.checked_sub_signed(chrono::TimeDelta::seconds(i64::from(offset)))?;
        Some(Utc.from_utc_datetime(&utc))
    }

    impl Codec for DateTime {
        type Value = chrono::DateTime<Utc>;
        type Input = chrono::DateTime<Utc>;
        fn encode(input: &chrono::DateTime<Utc>) -> Result<Zeroizing<Vec<u8>>> {
            Ok(Zeroizing::new(
                format!("{}T{}Z", ymd(&input.date_naive()), hms_nanos(&input.time())).into_bytes(),
            ))
        }
        fn decode(bytes: &[u8]) -> Result<chrono::DateTime<Utc>> {
            std::str::from_utf8(bytes)
                .ok()
                .and_then(parse_datetime)
                .ok_or_else(|| Error::codec("a Lockbox datetime is not ISO 8601"))
        }
        fn empty() -> Result<Option<chrono::DateTime<Utc>>> {
            Ok(None)
        }
    }

    /// `:time` — `%H:%M:%S.%N` (9 fraction digits) of the UTC wall time (Lockbox:
    /// `message.strftime("%H:%M:%S.%N")` after ActiveRecord's `Type::Time` converted to UTC).
    /// Reads any number of fraction digits, or none.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Time;

    impl Codec for Time {
        type Value = NaiveTime;
        type Input = NaiveTime;
        fn encode(input: &NaiveTime) -> Result<Zeroizing<Vec<u8>>> {
            Ok(Zeroizing::new(hms_nanos(input).into_bytes()))
        }
        fn decode(bytes: &[u8]) -> Result<NaiveTime> {
            let s = std::str::from_utf8(bytes)
                .map_err(|_| Error::codec("a Lockbox time is not UTF-8"))?;
            NaiveTime::parse_from_str(s, "%H:%M:%S%.f")
                .map_err(|_| Error::codec("a Lockbox time is not %H:%M:%S.%N"))
        }
        fn empty() -> Result<Option<NaiveTime>> {
            Ok(None)
        }
    }
}

#[cfg(feature = "chrono")]
pub use dates::{Date, DateTime, Time};

#[cfg(test)]
mod tests {
    //! Known answers. Where a value comes from, as the comments say: Lockbox's
    //! `lib/lockbox/model.rb` (the `pack`/`strftime`/`iso8601` calls) and
    //! `test/model_types_test.rb` (its formats and byte sizes), ruby/spec's
    //! `library/bigdecimal/to_s_spec.rb` for `to_s("F")`, and IEEE 754 doubles as Python's
    //! `struct.pack(">d", x)` prints them (the same bytes as Ruby's `pack("G")`).

    use super::*;

    fn enc<C: Codec>(v: &C::Input) -> Vec<u8> {
        C::encode(v).unwrap().to_vec()
    }

    #[test]
    fn integer_is_pack_q_big_endian() {
        // pack("q>"): 8 bytes, two's complement, big-endian
        assert_eq!(
            enc::<Integer>(&-2),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]
        );
        assert_eq!(Integer::decode(&[0, 0, 0, 0, 0, 0, 1, 0]).unwrap(), 256);
        // test_type_integer_in_range: 2**63 - 1 and -(2**63)
        assert_eq!(
            enc::<Integer>(&i64::MAX),
            [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(
            Integer::decode(&[0x80, 0, 0, 0, 0, 0, 0, 0]).unwrap(),
            i64::MIN
        );
        assert_eq!(Integer::decode(&[0xff; 8]).unwrap(), -1);
        assert!(Integer::decode(&[1, 2]).is_err());
        assert!(Integer::decode(&[0; 9]).is_err());
    }

    #[test]
    fn float_is_pack_g_big_endian_double() {
        let known: [(f64, [u8; 8]); 6] = [
            (1.5, [0x3f, 0xf8, 0, 0, 0, 0, 0, 0]),
            (-2.0, [0xc0, 0, 0, 0, 0, 0, 0, 0]),
            (0.1, [0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a]),
            // test_type_float / test_type_float_negative: ±10.12345678
            (
                10.12345678,
                [0x40, 0x24, 0x3f, 0x35, 0xba, 0x21, 0x23, 0x91],
            ),
            (
                -10.12345678,
                [0xc0, 0x24, 0x3f, 0x35, 0xba, 0x21, 0x23, 0x91],
            ),
            // test_type_float_infinity
            (f64::NEG_INFINITY, [0xff, 0xf0, 0, 0, 0, 0, 0, 0]),
        ];
        for (value, bytes) in known {
            assert_eq!(enc::<Float>(&value), bytes, "{value}");
            assert_eq!(Float::decode(&bytes).unwrap().to_bits(), value.to_bits());
        }
        assert_eq!(
            Float::decode(&[0x7f, 0xf0, 0, 0, 0, 0, 0, 0]).unwrap(),
            f64::INFINITY
        );
        // test_type_float_nan: a quiet NaN (Ruby's Float::NAN) reads as NaN, and NaN writes one
        assert!(
            Float::decode(&[0x7f, 0xf8, 0, 0, 0, 0, 0, 0])
                .unwrap()
                .is_nan()
        );
        assert!(Float::decode(&enc::<Float>(&f64::NAN)).unwrap().is_nan());
        assert!(Float::decode(&[0x3f, 0xf8]).is_err());
    }

    #[test]
    fn boolean_is_t_or_f_and_only_t_is_true() {
        // test_type_boolean_true / _false: format "t" / "f"
        assert_eq!(enc::<Boolean>(&true), b"t");
        assert_eq!(enc::<Boolean>(&false), b"f");
        assert!(Boolean::decode(b"t").unwrap());
        // model.rb decrypt: `message = message == "t"` — every other plaintext is false
        for other in [&b"f"[..], b"", b"x", b"T", b"true", b"1", b"t ", b"tt"] {
            assert!(!Boolean::decode(other).unwrap(), "{other:?}");
        }
    }

    #[test]
    fn decimal_is_bigdecimal_to_s_f() {
        // ruby/spec BigDecimal#to_s: "removes trailing spaces in floating point notation"
        for (input, written) in [
            ("1.2500", "1.25"),
            ("0000.00000", "0.0"),
            ("-00.000010000", "-0.00001"),
            ("500000", "500000.0"),
            ("-123.45678901234567890", "-123.4567890123456789"),
            ("12.50", "12.5"),
            ("+7", "7.0"),
            ("-0", "-0.0"),
            ("NaN", "NaN"),
            ("-Infinity", "-Infinity"),
        ] {
            assert_eq!(enc::<Decimal>(input), written.as_bytes(), "{input}");
        }
        for bad in ["1e5", "", "-", ".5", "1.", "1.2.3", "0x10", " 1", "١٢"] {
            assert!(Decimal::encode(bad).is_err(), "{bad:?}");
        }
        // reading returns the stored text as it is
        for stored in ["123.45", "100.0", "-0.5", "Infinity", "7"] {
            assert_eq!(Decimal::decode(stored.as_bytes()).unwrap(), stored);
        }
        for bad in [&b"1e5"[..], b"abc", b"", b"\xff"] {
            assert_eq!(
                Decimal::decode(bad).unwrap_err().kind(),
                crate::ErrorKind::Codec
            );
        }
    }

    fn json(v: serde_json::Value) -> JsonValue {
        JsonValue::from(v)
    }

    #[test]
    fn json_reads_what_activesupport_writes() {
        // test_type_json: {a: 1, b: "hi"}.to_json
        let value = json(serde_json::json!({"a": 1, "b": "hi"}));
        assert_eq!(enc::<Json>(&value), br#"{"a":1,"b":"hi"}"#);
        assert_eq!(Json::decode(br#"{"a":1,"b":"hi"}"#).unwrap(), value);
        // ActiveSupport escapes <, >, & and U+2028/9 (escape_html_entities_in_json)
        assert_eq!(
            enc::<Json>(&json(serde_json::json!({"a": "<b&c>\u{2028}"}))),
            br#"{"a":"\u003cb\u0026c\u003e\u2028"}"#
        );
        assert_eq!(
            Json::decode(br#"["\u003cb\u0026c\u003e","\u2029",null,1.5,true]"#).unwrap(),
            json(serde_json::json!(["<b&c>", "\u{2029}", null, 1.5, true]))
        );
        let e = Json::decode(br#"{"secret": tru"#).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Codec);
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn json_from_serde_json_writes_the_bytes_serde_json_writes() {
        // what the codec wrote before JsonValue (serde_json::to_string): unchanged
        for v in [
            serde_json::json!({"b": [1, -2, 1.5, -0.0, 1e20, 1e-7, 123456789.125, u64::MAX, i64::MIN]}),
            serde_json::json!(["é", "\u{1}\n\t\"\\", null, true, {}, []]),
            serde_json::json!(0.1),
            serde_json::json!(f64::MAX),
        ] {
            assert_eq!(
                enc::<Json>(&json(v.clone())),
                serde_json::to_string(&v).unwrap().as_bytes()
            );
            assert_eq!(json(v.clone()).to_serde_json(), v);
        }
    }

    #[test]
    fn json_numbers_are_kept_exactly() {
        // Ruby: 1.3101333033102623e+20.to_json, (2**70).to_json, and a float the shortest
        // round-trip form of which serde_json's fast parser misreads without float_roundtrip
        for text in [
            &b"1.3101333033102623e20"[..],
            b"1.3101333033102623e+20",
            b"1180591620717411303424",
            b"-1180591620717411303424",
            b"[1180591620717411303424,0.1,-0.0,1E400]",
            b"{\"b\":1,\"a\":2,\"b\":3}",
        ] {
            let v = Json::decode(text).unwrap();
            assert_eq!(enc::<Json>(&v), text, "{}", String::from_utf8_lossy(text));
        }
        let JsonValue::Number(n) = Json::decode(b"1.3101333033102623e20").unwrap() else {
            panic!("a number")
        };
        assert_eq!(n.as_f64().to_bits(), 1.3101333033102623e20_f64.to_bits());
        assert_eq!(
            json(serde_json::from_str("1.3101333033102623e20").unwrap()),
            JsonValue::Number(JsonNumber::from_f64(1.3101333033102623e20).unwrap()),
            "serde_json reads floats correctly rounded (feature float_roundtrip)"
        );
        let JsonValue::Number(big) = Json::decode(b"1180591620717411303424").unwrap() else {
            panic!("a number")
        };
        assert_eq!(big.as_i128(), Some(1 << 70));
        assert_eq!(JsonValue::from(1u128 << 70), JsonValue::Number(big));
        assert_eq!(JsonNumber::parse("1 "), None);
        assert_eq!(JsonNumber::parse("01"), None);
        assert_eq!(JsonNumber::parse("-1.5e-3").unwrap().as_str(), "-1.5e-3");
        // too deep is an error, not a stack overflow
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            Json::decode(deep.as_bytes()).unwrap_err().kind(),
            crate::ErrorKind::Codec
        );
    }

    #[test]
    fn inet_is_family_prefix_and_padded_address() {
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let enc6 = enc::<Inet>(&(v6, 64));
        assert_eq!((enc6.len(), enc6[0], enc6[1]), (18, 1, 64));
        assert_eq!(Inet::decode(&enc6).unwrap(), (v6, 64));
        // pack("CCa16"): family 0, prefix, the 4 address bytes NUL-padded to 16
        assert_eq!(
            enc::<Inet>(&("10.1.2.3".parse().unwrap(), 24)),
            [0, 24, 10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert!(Inet::encode(&("10.1.2.3".parse().unwrap(), 33)).is_err());
        assert!(Inet::decode(&[2; 18]).is_err());
        // a prefix longer than the family allows reads as an error, as encode refuses to write it
        // (found by the codecs fuzz target: it read, then could not be written back)
        let mut long = enc6.clone();
        long[1] = 129;
        assert_eq!(
            Inet::decode(&long).unwrap_err().kind(),
            crate::ErrorKind::Codec
        );
        let mut v4 = enc::<Inet>(&("10.1.2.3".parse().unwrap(), 32));
        assert!(Inet::decode(&v4).is_ok());
        v4[1] = 33;
        assert_eq!(
            Inet::decode(&v4).unwrap_err().kind(),
            crate::ErrorKind::Codec
        );
    }

    #[test]
    fn non_string_types_read_a_stored_empty_string_as_none() {
        assert!(Boolean::empty().unwrap().is_none());
        assert!(Integer::empty().unwrap().is_none());
        assert!(Float::empty().unwrap().is_none());
        assert!(Decimal::empty().unwrap().is_none());
        assert!(Json::empty().unwrap().is_none());
        assert!(Inet::empty().unwrap().is_none());
    }

    #[test]
    fn round_trips() {
        for v in [0, 1, -1, 42, i64::MIN, i64::MAX] {
            assert_eq!(Integer::decode(&enc::<Integer>(&v)).unwrap(), v);
        }
        for v in [
            0.0,
            -0.0,
            1e-310,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::INFINITY,
        ] {
            assert_eq!(
                Float::decode(&enc::<Float>(&v)).unwrap().to_bits(),
                v.to_bits()
            );
        }
        for v in [true, false] {
            assert_eq!(Boolean::decode(&enc::<Boolean>(&v)).unwrap(), v);
        }
        for v in [
            "0.0",
            "-1.5",
            "123456789012345678901234567890.000000000000000000001",
        ] {
            assert_eq!(Decimal::decode(&enc::<Decimal>(v)).unwrap(), v);
        }
        let j = json(serde_json::json!({"x": [1, "é<>&", {"y": null}], "z": -0.25}));
        assert_eq!(Json::decode(&enc::<Json>(&j)).unwrap(), j);
    }

    #[cfg(feature = "chrono")]
    mod dates {
        use chrono::{NaiveDate, NaiveTime, TimeZone, Utc};

        use super::super::{Date, DateTime, Time};
        use super::*;

        fn date(y: i32, m: u32, d: u32) -> NaiveDate {
            NaiveDate::from_ymd_opt(y, m, d).unwrap()
        }

        #[test]
        fn date_is_strftime_y_m_d() {
            assert_eq!(enc::<Date>(&date(2024, 1, 2)), b"2024-01-02");
            assert_eq!(Date::decode(b"2024-01-02").unwrap(), date(2024, 1, 2));
            // test_type_date_bytesize: year 999 is still 10 bytes (padded), year 99999 is not
            assert_eq!(enc::<Date>(&date(999, 1, 1)), b"0999-01-01");
            // Ruby's %Y has no "+" past 9999 (chrono's %Y would write +99999-01-01)
            assert_eq!(enc::<Date>(&date(99999, 1, 1)), b"99999-01-01");
            assert_eq!(enc::<Date>(&date(-1, 12, 31)), b"-0001-12-31");
            for v in [
                date(999, 1, 1),
                date(99999, 1, 1),
                date(-1, 12, 31),
                date(2000, 2, 29),
            ] {
                assert_eq!(Date::decode(&enc::<Date>(&v)).unwrap(), v);
            }
            for bad in [
                &b"2024-1-02"[..],
                b"2024-02-30",
                b"24-01-02",
                b"2024-01-02T00:00",
                b"",
                b"+2024-01-02",
            ] {
                assert!(Date::decode(bad).is_err(), "{bad:?}");
            }
        }

        #[test]
        fn datetime_is_iso8601_9_in_utc() {
            // test_type_datetime: Time.current.round(6) written as signed_at.utc.iso8601(9)
            let t = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap()
                + chrono::TimeDelta::microseconds(123_456);
            assert_eq!(enc::<DateTime>(&t), b"2024-01-02T03:04:05.123456000Z");
            // test_type_datetime_bytesize: 30 bytes
            assert_eq!(enc::<DateTime>(&t).len(), 30);
            let ns = Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 59).unwrap()
                + chrono::TimeDelta::nanoseconds(999_999_999);
            assert_eq!(enc::<DateTime>(&ns), b"1999-12-31T23:59:59.999999999Z");
            let whole = Utc.with_ymd_and_hms(2024, 6, 1, 0, 0, 0).unwrap();
            assert_eq!(enc::<DateTime>(&whole), b"2024-06-01T00:00:00.000000000Z");
            for v in [t, ns, whole] {
                assert_eq!(DateTime::decode(&enc::<DateTime>(&v)).unwrap(), v);
            }
            // a Rails app with default_timezone = :local writes its offset: the same instant
            let utc = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap()
                + chrono::TimeDelta::nanoseconds(123_456_789);
            assert_eq!(
                DateTime::decode(b"2024-01-02T04:04:05.123456789+01:00").unwrap(),
                utc
            );
            assert_eq!(
                DateTime::decode(b"2024-01-01T22:04:05.123456789-05:00").unwrap(),
                utc
            );
            assert_eq!(
                DateTime::decode(b"2024-01-02T03:04:05.123456789").unwrap(),
                utc
            );
            for bad in [
                &b"2024-01-02 03:04:05Z"[..],
                b"2024-01-02T03:04Z",
                b"2024-01-02T03:04:05+1",
                b"2024-01-02T03:04:05+24:00",
                b"garbage",
                b"",
            ] {
                assert!(DateTime::decode(bad).is_err(), "{bad:?}");
            }
        }

        #[test]
        fn time_is_strftime_h_m_s_n() {
            // test_type_time: opens_at.utc.strftime("%H:%M:%S.%N"); test_type_time_bytesize: 18
            let t = NaiveTime::from_hms_micro_opt(3, 4, 5, 123_456).unwrap();
            assert_eq!(enc::<Time>(&t), b"03:04:05.123456000");
            let n = NaiveTime::from_hms_nano_opt(23, 0, 9, 7).unwrap();
            assert_eq!(enc::<Time>(&n), b"23:00:09.000000007");
            assert_eq!(enc::<Time>(&NaiveTime::MIN), b"00:00:00.000000000");
            for v in [t, n, NaiveTime::MIN] {
                assert_eq!(Time::decode(&enc::<Time>(&v)).unwrap(), v);
            }
            assert_eq!(
                Time::decode(b"03:04:05").unwrap(),
                NaiveTime::from_hms_opt(3, 4, 5).unwrap()
            );
            // a leap second has no Ruby form: the last nanosecond of second 59
            let leap = NaiveTime::from_hms_nano_opt(23, 59, 59, 1_500_000_000).unwrap();
            assert_eq!(enc::<Time>(&leap), b"23:59:59.999999999");
            for bad in [&b"03:04"[..], b"25:00:00.0", b"noon", b"03:04:05Z", b""] {
                assert!(Time::decode(bad).is_err(), "{bad:?}");
            }
        }
    }
}
