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
//! | `:decimal` | [`Decimal`] | `String` | the decimal's text (`to_s("F")`), checked |
//! | `:date` | [`Date`] (feature `chrono`) | `chrono::NaiveDate` | `%Y-%m-%d` |
//! | `:datetime` | [`DateTime`] (feature `chrono`) | `chrono::DateTime<Utc>` | ISO 8601, 9 fraction digits, UTC `Z` |
//! | `:time` | [`Time`] (feature `chrono`) | `chrono::NaiveTime` | `%H:%M:%S.%N` |
//! | `:json` | [`Json`] | `serde_json::Value` | JSON as ActiveSupport writes it |
//! | `:inet` | [`Inet`] | `(IpAddr, u8)` | family (0 v4, 1 v6), prefix, address padded to 16 bytes |
//!
//! `:hash` and `:array` (YAML) are not supported. A stored `""` of a non-string type reads as
//! `None` (Lockbox never writes one: it stores NULL for those).

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

/// `:boolean` — `t` / `f` (anything but `t` reads as false, as Lockbox).
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

/// `:decimal` — the number's plain text (`BigDecimal#to_s("F")`, e.g. `123.45`), kept as a
/// string so no precision is lost; checked to be a decimal number.
#[derive(Debug, Clone, Copy, Default)]
pub struct Decimal;

fn is_decimal(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    let mut parts = body.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

impl Codec for Decimal {
    type Value = String;
    type Input = str;
    fn encode(input: &str) -> Result<Zeroizing<Vec<u8>>> {
        if !is_decimal(input) {
            return Err(Error::codec(
                "not a decimal number (expected digits with an optional sign and fraction)",
            ));
        }
        Ok(Zeroizing::new(input.as_bytes().to_vec()))
    }
    fn decode(bytes: &[u8]) -> Result<String> {
        let s = std::str::from_utf8(bytes)
            .map_err(|_| Error::codec("a Lockbox decimal is not UTF-8"))?;
        if !is_decimal(s) {
            return Err(Error::codec("a Lockbox decimal is not a decimal number"));
        }
        Ok(s.to_owned())
    }
    fn empty() -> Result<Option<String>> {
        Ok(None)
    }
}

/// `:json` — JSON text; written with ActiveSupport's escaping (`<`, `>`, `&`, U+2028/9).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Codec for Json {
    type Value = serde_json::Value;
    type Input = serde_json::Value;
    fn encode(input: &serde_json::Value) -> Result<Zeroizing<Vec<u8>>> {
        let raw = Zeroizing::new(
            serde_json::to_string(input).map_err(|_| Error::codec("JSON encoding failed"))?,
        );
        // these characters can only occur inside JSON strings, so a plain replacement is exact
        let mut out = String::with_capacity(raw.len());
        for c in raw.chars() {
            match c {
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                }
                c => out.push(c),
            }
        }
        Ok(Zeroizing::new(out.into_bytes()))
    }
    fn decode(bytes: &[u8]) -> Result<serde_json::Value> {
        serde_json::from_slice(bytes).map_err(|e| {
            Error::codec(format!(
                "invalid JSON at line {} column {}",
                e.line(),
                e.column()
            ))
        })
    }
    fn empty() -> Result<Option<serde_json::Value>> {
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
        let addr = match b[0] {
            0 => IpAddr::V4(Ipv4Addr::new(b[2], b[3], b[4], b[5])),
            1 => IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&b[2..18]).map_err(|_| Error::codec("bad inet"))?,
            )),
            _ => return Err(Error::codec("a Lockbox inet has family 0 or 1")),
        };
        Ok((addr, b[1]))
    }
    fn empty() -> Result<Option<(IpAddr, u8)>> {
        Ok(None)
    }
}

#[cfg(feature = "chrono")]
mod dates {
    use chrono::{NaiveDate, NaiveTime, Utc};

    use super::*;

    /// `:date` — `%Y-%m-%d`.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Date;

    impl Codec for Date {
        type Value = NaiveDate;
        type Input = NaiveDate;
        fn encode(input: &NaiveDate) -> Result<Zeroizing<Vec<u8>>> {
            Ok(Zeroizing::new(
                input.format("%Y-%m-%d").to_string().into_bytes(),
            ))
        }
        fn decode(bytes: &[u8]) -> Result<NaiveDate> {
            let s = std::str::from_utf8(bytes)
                .map_err(|_| Error::codec("a Lockbox date is not UTF-8"))?;
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| Error::codec("a Lockbox date is not %Y-%m-%d"))
        }
        fn empty() -> Result<Option<NaiveDate>> {
            Ok(None)
        }
    }

    /// `:datetime` — ISO 8601 with 9 fraction digits in UTC (`2024-01-02T03:04:05.123456000Z`);
    /// reads any RFC 3339 offset.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct DateTime;

    impl Codec for DateTime {
        type Value = chrono::DateTime<Utc>;
        type Input = chrono::DateTime<Utc>;
        fn encode(input: &chrono::DateTime<Utc>) -> Result<Zeroizing<Vec<u8>>> {
            Ok(Zeroizing::new(
                input
                    .format("%Y-%m-%dT%H:%M:%S%.9fZ")
                    .to_string()
                    .into_bytes(),
            ))
        }
        fn decode(bytes: &[u8]) -> Result<chrono::DateTime<Utc>> {
            let s = std::str::from_utf8(bytes)
                .map_err(|_| Error::codec("a Lockbox datetime is not UTF-8"))?;
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|_| Error::codec("a Lockbox datetime is not ISO 8601"))
        }
        fn empty() -> Result<Option<chrono::DateTime<Utc>>> {
            Ok(None)
        }
    }

    /// `:time` — `%H:%M:%S.%N` (9 fraction digits).
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Time;

    impl Codec for Time {
        type Value = NaiveTime;
        type Input = NaiveTime;
        fn encode(input: &NaiveTime) -> Result<Zeroizing<Vec<u8>>> {
            Ok(Zeroizing::new(
                input.format("%H:%M:%S%.9f").to_string().into_bytes(),
            ))
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
    use super::*;

    #[test]
    fn known_bytes() {
        assert_eq!(
            &Integer::encode(&-2).unwrap()[..],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]
        );
        assert_eq!(Integer::decode(&[0, 0, 0, 0, 0, 0, 1, 0]).unwrap(), 256);
        assert!(Integer::decode(&[1, 2]).is_err());
        assert_eq!(
            &Float::encode(&1.5).unwrap()[..],
            &[0x3f, 0xf8, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(&Boolean::encode(&true).unwrap()[..], b"t");
        assert!(!Boolean::decode(b"x").unwrap());
        assert_eq!(
            &Json::encode(&serde_json::json!({"a": "<b&c>"})).unwrap()[..],
            br#"{"a":"\u003cb\u0026c\u003e"}"#
        );
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let enc = Inet::encode(&(v6, 64)).unwrap();
        assert_eq!((enc.len(), enc[0], enc[1]), (18, 1, 64));
        assert_eq!(Inet::decode(&enc).unwrap(), (v6, 64));
        let v4 = Inet::encode(&("10.1.2.3".parse().unwrap(), 24)).unwrap();
        assert_eq!(
            &v4[..],
            &[0, 24, 10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert!(
            Decimal::encode("12.50").is_ok()
                && Decimal::encode("1e5").is_err()
                && Decimal::encode("-0.5").is_ok()
        );
    }
}
