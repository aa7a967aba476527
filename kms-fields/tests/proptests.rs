//! Property tests: round trips for arbitrary inputs, and every decoder fed arbitrary bytes
//! returns an error instead of panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use kms_fields::cipher::{self, AttributeOptions, padding};
use kms_fields::codec::{Binary, Codec, MessagePack, Text, lockbox};
use kms_fields::provider::{LocalKey, Provider, test_key};
use kms_fields::{
    DataKey, EncryptionContext, ErrorKind, KeySpec, Kms, KmsBox, StoredKey, encoding,
};
use proptest::prelude::*;

fn context_strategy() -> impl Strategy<Value = Option<EncryptionContext>> {
    proptest::option::of(
        proptest::collection::vec((".{0,12}", ".{0,24}"), 0..5)
            .prop_map(|pairs| pairs.into_iter().collect()),
    )
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    kms_fields::blocking::block_on(f).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cipher_round_trip(pt in proptest::collection::vec(any::<u8>(), 0..600), aad in proptest::collection::vec(any::<u8>(), 0..40), pad in proptest::option::of(1usize..64)) {
        let key = DataKey::generate().unwrap();
        let opts = AttributeOptions { associated_data: &aad, padding: pad };
        let ct = cipher::encrypt(&key, &pt, opts).unwrap();
        prop_assert_eq!(&cipher::decrypt(&key, &ct, opts).unwrap()[..], &pt[..]);
        let text = encoding::strict_encode(&ct);
        prop_assert_eq!(&cipher::decrypt_base64(&key, &text, opts).unwrap()[..], &pt[..]);
    }

    #[test]
    fn test_key_round_trip(pt in proptest::collection::vec(any::<u8>(), 0..100), ctx in context_strategy()) {
        let ct = test_key::encrypt(&pt, ctx.as_ref());
        prop_assert_eq!(&test_key::decrypt(&ct, ctx.as_ref()).unwrap()[..], &pt[..]);
    }

    #[test]
    fn local_key_round_trip(pt in proptest::collection::vec(any::<u8>(), 0..100), ctx in context_strategy()) {
        let p = LocalKey::new().with_key("k", &[3u8; 32]).unwrap();
        let ct = block_on(p.wrap("local/k", &pt, ctx.as_ref())).unwrap();
        prop_assert_eq!(&block_on(p.unwrap("local/k", &ct, ctx.as_ref())).unwrap()[..], &pt[..]);
    }

    #[test]
    fn stored_key_round_trip(version in any::<u32>(), ct in proptest::collection::vec(any::<u8>(), 1..200)) {
        let s = StoredKey::new(version, ct.clone());
        let parsed = StoredKey::parse(&s.encode()).unwrap();
        prop_assert_eq!(parsed.version, version);
        prop_assert_eq!(parsed.ciphertext, ct);
    }

    #[test]
    fn box_and_seal_round_trip(msg in proptest::collection::vec(any::<u8>(), 1..200), ctx in context_strategy(), value in proptest::collection::vec(".{0,20}", 0..5)) {
        let b = KmsBox::new(Kms::new(), KeySpec::new().key_id("insecure-test-key"));
        let ct = b.encrypt_blocking(&msg, ctx.as_ref()).unwrap();
        prop_assert_eq!(&b.decrypt_blocking(&ct, ctx.as_ref()).unwrap()[..], &msg[..]);
        let sealed = b.seal_blocking(&value, ctx.as_ref()).unwrap();
        prop_assert_eq!(b.open_blocking::<Vec<String>>(&sealed, ctx.as_ref()).unwrap(), value);
    }

    #[test]
    fn context_canonical_is_valid_sorted_json(ctx in context_strategy()) {
        let ctx = ctx.unwrap_or_default();
        let parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&ctx.canonical_json()).unwrap();
        let keys: Vec<&String> = parsed.keys().collect();
        let mut sorted = keys.clone();
        sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        prop_assert_eq!(keys, sorted);
        for (k, v) in &parsed {
            prop_assert_eq!(Some(v.as_str().unwrap().to_owned()), ctx.get(k));
        }
    }

    #[test]
    fn decoders_never_panic_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let key = DataKey::from_slice(&[5u8; 32]).unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let _ = StoredKey::parse(&text);
        let _ = test_key::decrypt(&bytes, None);
        let _ = test_key::decrypt(&bytes, Some(&EncryptionContext::for_model("User", 1)));
        let _ = cipher::decrypt(&key, &bytes, AttributeOptions::lockbox().padding(Some(16)));
        let _ = cipher::decrypt_base64(&key, &text, AttributeOptions::native("email"));
        let _ = padding::unpad_in_place(&mut bytes.clone(), 16);
        let _ = Text::decode(&bytes);
        prop_assert_eq!(Binary::decode(&bytes).unwrap(), bytes.clone());
        let _ = MessagePack::<Vec<(String, u64)>>::decode(&bytes);
        lockbox_decoders(&bytes);
        #[cfg(feature = "kms-rails")]
        kms_rails_decoders(&bytes);
        let _ = encoding::lenient_decode(&text);
        let p = LocalKey::new().with_key("k", &[3u8; 32]).unwrap();
        let _ = block_on(p.unwrap("local/k", &bytes, None));
        let b = KmsBox::new(Kms::new(), KeySpec::new().key_id("insecure-test-key").version(2).previous_version(1, "insecure-test-key"));
        let _ = b.decrypt_blocking(&text, None);
        let _ = b.open_blocking::<String>(&text, None);
        let _ = b.open_blocking::<String>(&format!("$kmsf$1$v1:{text}$AAAA"), None);
    }

    #[test]
    fn lockbox_codecs_round_trip(i in any::<i64>(), f in any::<f64>(), b in any::<bool>(), int_part in "[0-9]{1,30}", frac in proptest::option::of("[0-9]{1,30}"), sign in "[-+]?", map in proptest::collection::btree_map(".{0,8}", ".{0,16}", 0..4)) {
        prop_assert_eq!(lockbox::Integer::decode(&lockbox::Integer::encode(&i).unwrap()).unwrap(), i);
        prop_assert_eq!(lockbox::Float::decode(&lockbox::Float::encode(&f).unwrap()).unwrap().to_bits(), f.to_bits());
        prop_assert_eq!(lockbox::Boolean::decode(&lockbox::Boolean::encode(&b).unwrap()).unwrap(), b);
        // a decimal is written in BigDecimal#to_s("F") form: read back as written, and stable
        let d = format!("{sign}{int_part}{}", frac.map(|f| format!(".{f}")).unwrap_or_default());
        let written = lockbox::Decimal::encode(&d).unwrap();
        let text = std::str::from_utf8(&written).unwrap();
        prop_assert_eq!(lockbox::Decimal::decode(&written).unwrap(), text);
        prop_assert_eq!(&lockbox::Decimal::encode(text).unwrap()[..], &written[..]);
        // ruby/spec: no exponent, no leading or trailing zeros, at least one digit either side
        let (int, fraction) = text.trim_start_matches('-').split_once('.').unwrap();
        prop_assert!(int == "0" || !int.starts_with('0'), "{}", text);
        prop_assert!(fraction == "0" || !fraction.ends_with('0'), "{}", text);
        let json = lockbox::JsonValue::from(serde_json::Value::Object(map.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect()));
        let bytes = lockbox::Json::encode(&json).unwrap();
        prop_assert!(!bytes.iter().any(|c| matches!(c, b'<' | b'>' | b'&')));
        prop_assert_eq!(lockbox::Json::decode(&bytes).unwrap(), json);
    }

    #[cfg(feature = "chrono")]
    #[test]
    fn lockbox_dates_round_trip(days in -400_000i32..4_000_000, secs in 0u32..86_400, nanos in 0u32..1_000_000_000, ts in -62_135_596_800i64..600_000_000_000) {
        use chrono::{NaiveDate, NaiveTime, TimeZone, Utc};
        let date = NaiveDate::from_num_days_from_ce_opt(days).unwrap();
        prop_assert_eq!(lockbox::Date::decode(&lockbox::Date::encode(&date).unwrap()).unwrap(), date);
        let time = NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos).unwrap();
        let enc = lockbox::Time::encode(&time).unwrap();
        prop_assert_eq!(enc.len(), 18);
        prop_assert_eq!(lockbox::Time::decode(&enc).unwrap(), time);
        let at = Utc.timestamp_opt(ts, nanos).unwrap();
        let enc = lockbox::DateTime::encode(&at).unwrap();
        prop_assert!(enc.ends_with(b"Z"));
        prop_assert_eq!(lockbox::DateTime::decode(&enc).unwrap(), at);
    }

    /// A stored `vN:` value with a byte changed, truncated, or with another version prefix:
    /// under the local key (AES-GCM, authenticated) it decrypts to the original plaintext (the
    /// change was insignificant, e.g. base64 padding bits) or returns a typed error — never
    /// another plaintext, never a panic.
    #[test]
    fn tampered_values_return_typed_errors(n in 0usize..200, flip in 1u8..=255, prefix in "v[0-9]{1,3}:") {
        let kms = Kms::builder().insecure_test_key().local(kms_fields::provider::LocalKey::new().with_key("p", &[5; 32]).unwrap()).build();
        let b = KmsBox::new(kms, KeySpec::new().key_id("local/p"));
        let original = b"0123456789abcdef0123456789abcdef";
        let ct = b.encrypt_blocking(original, None).unwrap();
        let mut bytes = ct.clone().into_bytes();
        let i = n % bytes.len();
        bytes[i] ^= flip;
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        let moved = format!("{prefix}{}", &ct[3..]);
        for (what, value) in [("mutated", mutated.as_str()), ("truncated", &ct[..i]), ("re-versioned", moved.as_str())] {
            match b.decrypt_blocking(value, None) {
                Ok(p) => prop_assert_eq!(&p[..], &original[..], "{} {:?}", what, value),
                Err(e) => prop_assert!(
                    matches!(e.kind(), ErrorKind::DecryptionFailed | ErrorKind::BadFormat | ErrorKind::VersionNotActive(_)),
                    "{} {:?}: {:?}", what, value, e
                ),
            }
        }
        // another version than the stored one is never active here
        if !moved.starts_with("v1:") && !moved.starts_with("v01:") && !moved.starts_with("v001:") {
            let e = b.decrypt_blocking(&moved, None).unwrap_err();
            prop_assert!(matches!(e.kind(), ErrorKind::VersionNotActive(_)), "{:?}", e);
        }
    }
}

/// Every Lockbox type decoder on arbitrary bytes: a value or an error, never a panic.
fn lockbox_decoders(bytes: &[u8]) {
    let _ = lockbox::Boolean::decode(bytes);
    let _ = lockbox::Integer::decode(bytes);
    let _ = lockbox::Float::decode(bytes);
    let _ = lockbox::Decimal::decode(bytes);
    let _ = lockbox::Json::decode(bytes);
    let _ = lockbox::Inet::decode(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = lockbox::Decimal::encode(text);
    }
    #[cfg(feature = "chrono")]
    {
        let _ = lockbox::Date::decode(bytes);
        let _ = lockbox::DateTime::decode(bytes);
        let _ = lockbox::Time::decode(bytes);
    }
}

/// kms_rails envelopes: arbitrary bytes as the stored MessagePack value, and as the parts of
/// one (any key length, any IV, any CBC input).
#[cfg(feature = "kms-rails")]
fn kms_rails_decoders(bytes: &[u8]) {
    use kms_fields::kms_rails::{Envelope, decrypt_cbc};
    let _ = Envelope::parse(bytes);
    let n = bytes.len();
    let (key, rest) = bytes.split_at(n.min(32));
    let (iv, blob) = rest.split_at(rest.len().min(16));
    // {"key" => bin, "iv" => bin, "blob" => bin}: fixmap of 3, fixstr names, bin8 values
    let mut map = vec![0x83];
    for (name, value) in [(&b"key"[..], key), (b"iv", iv), (b"blob", blob)] {
        map.push(0xa0 | name.len() as u8);
        map.extend_from_slice(name);
        map.extend_from_slice(&[0xc4, value.len() as u8]);
        map.extend_from_slice(value);
    }
    let _ = Envelope::parse(&map);
    let _ = Envelope::from_base64_parts(
        &encoding::strict_encode(key),
        &encoding::strict_encode(iv),
        &encoding::strict_encode(blob),
    );
    let _ = decrypt_cbc(key, &[0u8; 16], blob);
    let _ = decrypt_cbc(&[7u8; 32], &[1u8; 16], bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A well-formed kms_rails map with arbitrary contents parses or is refused, and its CBC
    /// part decrypts or fails, without a panic.
    #[cfg(feature = "kms-rails")]
    #[test]
    fn kms_rails_envelopes_never_panic(key in proptest::collection::vec(any::<u8>(), 0..40), iv in proptest::collection::vec(any::<u8>(), 0..20), blocks in 0usize..6, tail in 0usize..16, fill in any::<u8>()) {
        let blob = vec![fill; blocks * 16 + tail];
        let _ = kms_fields::kms_rails::Envelope::from_base64_parts(
            &encoding::strict_encode(&key),
            &encoding::strict_encode(&iv),
            &encoding::strict_encode(&blob),
        );
        let iv16: [u8; 16] = std::array::from_fn(|i| iv.get(i).copied().unwrap_or(0));
        let _ = kms_fields::kms_rails::decrypt_cbc(&key, &iv16, &blob);
    }
}
