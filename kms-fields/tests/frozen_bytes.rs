//! Byte-exact pins of the frozen formats (docs/FORMATS.md, which lists every format's pins). A
//! failure here means stored data would change meaning: do not "fix" the expected bytes
//! without a data migration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use kms_fields::cipher::{self, AttributeOptions, Backend, padding};
use kms_fields::provider::test_key;
use kms_fields::{DataKey, EncryptionContext, StoredKey, encoding};

#[test]
fn key_column() {
    assert_eq!(
        StoredKey::new(1, vec![0xde, 0xad, 0xbe, 0xef]).encode(),
        "v1:3q2+7w=="
    );
    assert_eq!(StoredKey::new(12, vec![0xff; 3]).encode(), "v12:////");
    let parsed = StoredKey::parse("v12:////").unwrap();
    assert_eq!((parsed.version, parsed.ciphertext), (12, vec![0xff; 3]));
}

#[test]
fn canonical_context() {
    assert_eq!(
        EncryptionContext::for_model("User", 1).canonical_json(),
        r#"{"model_id":"1","model_name":"User"}"#
    );
    let ctx = EncryptionContext::new()
        .with("z", "1")
        .with_int("a", 22)
        .with("m", "x y");
    assert_eq!(ctx.canonical_json(), r#"{"a":"22","m":"x y","z":"1"}"#);
    assert_eq!(
        ctx.vault_context(),
        "eyJhIjoiMjIiLCJtIjoieCB5IiwieiI6IjEifQ=="
    );
    assert_eq!(ctx.gcp_aad(), br#"{"a":"22","m":"x y","z":"1"}"#);
    assert_eq!(
        ctx.test_key_encoding(),
        "eyJhIjoiMjIiLCJtIjoieCB5IiwieiI6IjEifQ==\n"
    );
    assert_eq!(
        ctx.sorted_pairs(),
        vec![
            ("a".into(), "22".into()),
            ("m".into(), "x y".into()),
            ("z".into(), "1".into())
        ]
    );
}

#[test]
fn test_key_ciphertext() {
    let key =
        hex::decode("f150833508299a53f1d229e05ab25f985816fccef5f8ffcb15483a6ef68ab1c9").unwrap();
    let ct = test_key::encrypt(&key, Some(&EncryptionContext::for_model("User", 1)));
    assert_eq!(
        StoredKey::new(1, ct).encode(),
        "v1:insecure+data+A6OFZDRE5RZ3BtbFB4MGluZ1dySmZtRmdXL003MStQL0xGVWc2YnZhS3Njaz06ZXlKdGIyUmxiRjlwWkNJNklqRWlMQ0p0YjJSbGJGOXVZVzFsSWpvaVZYTmxjaUo5Cg=="
    );
    assert_eq!(
        encoding::strict_encode(&test_key::PREFIX),
        "insecure+data+A="
    );
}

/// Lockbox layout, pinned with a row Lockbox 2.1.0 wrote (insecure_v1 row 1, email): same key
/// and nonce give the same bytes, under every backend.
#[test]
fn lockbox_layout_matches_ruby_row() {
    let key = DataKey::from_slice(
        &hex::decode("ef43ba7f72efdf289e6955b63457bcbb29c826172111859e61d03204663b7ee9").unwrap(),
    )
    .unwrap();
    let nonce: [u8; 12] = hex::decode("c7da9f11774ab88ecbd7aa44")
        .unwrap()
        .try_into()
        .unwrap();
    for backend in Backend::all() {
        let ct = cipher::encrypt_with_nonce(
            *backend,
            &key,
            &nonce,
            b"test@example.org",
            AttributeOptions::lockbox(),
        )
        .unwrap();
        assert_eq!(
            encoding::strict_encode(&ct),
            "x9qfEXdKuI7L16pESrUXaNvPzXj+L8OHS9TG4Lm/ppuq0bYwHXz9mWHMU6c=",
            "{backend:?}"
        );
    }
}

/// Expected bytes computed independently with Python `cryptography` (AESGCM, aad=b"email").
#[test]
fn native_mode_binds_the_attribute_name() {
    let key = DataKey::from_slice(&[0x11; 32]).unwrap();
    let nonce = [0x22; 12];
    for backend in Backend::all() {
        let ct = cipher::encrypt_with_nonce(
            *backend,
            &key,
            &nonce,
            b"hello",
            AttributeOptions::native("email"),
        )
        .unwrap();
        assert_eq!(
            hex::encode(&ct),
            "2222222222222222222222227f926b25af09e328f6209bb701efa571dcbfb17899",
            "{backend:?}"
        );
        for other in Backend::all() {
            let pt =
                cipher::decrypt_with(*other, &key, &ct, AttributeOptions::native("email")).unwrap();
            assert_eq!(&pt[..], b"hello");
        }
    }
}

#[test]
fn padding_iso7816() {
    assert_eq!(
        padding::pad(b"", 16).unwrap(),
        [&[0x80u8][..], &[0u8; 15]].concat()
    );
    assert_eq!(padding::pad(b"0123456789abcdef", 16).unwrap().len(), 32);
    let key = DataKey::from_slice(&[0x11; 32]).unwrap();
    let ct = cipher::encrypt_with_nonce(
        Backend::RustCrypto,
        &key,
        &[0; 12],
        b"abc",
        AttributeOptions::lockbox().padding(Some(16)),
    )
    .unwrap();
    assert_eq!(ct.len(), 12 + 16 + 16);
    let pt = cipher::decrypt(&key, &ct, AttributeOptions::lockbox().padding(Some(16))).unwrap();
    assert_eq!(&pt[..], b"abc");
}
