//! Property tests: round trips for arbitrary inputs, and every decoder fed arbitrary bytes
//! returns an error instead of panicking.

mod support;

use kms_fields::cipher::{self, AttributeOptions, padding};
use kms_fields::codec::{Codec, MessagePack, Text};
use kms_fields::provider::{LocalKey, Provider, test_key};
use kms_fields::{DataKey, EncryptionContext, KeySpec, Kms, KmsBox, StoredKey, encoding};
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
        let _ = MessagePack::<Vec<(String, u64)>>::decode(&bytes);
        let _ = encoding::lenient_decode(&text);
        let p = LocalKey::new().with_key("k", &[3u8; 32]).unwrap();
        let _ = block_on(p.unwrap("local/k", &bytes, None));
        let b = KmsBox::new(Kms::new(), KeySpec::new().key_id("insecure-test-key").version(2).previous_version(1, "insecure-test-key"));
        let _ = b.decrypt_blocking(&text, None);
        let _ = b.open_blocking::<String>(&text, None);
        let _ = b.open_blocking::<String>(&format!("$kmsf$1$v1:{text}$AAAA"), None);
    }

    #[test]
    fn decoders_never_panic_on_near_valid_values(n in 0usize..200, flip in any::<u8>(), prefix in "v[0-9]{1,3}:") {
        let b = KmsBox::new(Kms::new(), KeySpec::new().key_id("insecure-test-key"));
        let ct = b.encrypt_blocking(b"0123456789abcdef0123456789abcdef", None).unwrap();
        let mut bytes = ct.clone().into_bytes();
        let i = n % bytes.len();
        bytes[i] ^= flip;
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        let _ = b.decrypt_blocking(&mutated, None);
        let _ = b.decrypt_blocking(&ct[..i], None);
        let _ = b.decrypt_blocking(&format!("{prefix}{}", &ct[3..]), None);
    }
}
