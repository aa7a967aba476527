//! The Google Cloud KMS provider, through the real google-cloud-kms-v1 client over REST, against
//! the drongo emulator (PyPI). drongo's "ciphertext" is reversible base64 JSON, not encryption:
//! these tests check request/response shapes, AAD plumbing and error mapping, nothing about
//! the cryptography of Cloud KMS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kms_fields::{DataKey, EncryptionContext, ErrorKind, KeySpec, blocking, encoding};
use kms_fields_tests::{drongo_key, drongo_kms};

fn ctx(id: i64) -> EncryptionContext {
    EncryptionContext::for_model("User", id)
}

#[test]
fn round_trip_and_aad_mismatch() {
    let kms = drongo_kms();
    let key_id = drongo_key();
    let spec = KeySpec::new().key_id(&key_id);
    let key = DataKey::generate().unwrap();
    let stored =
        blocking::run(kms.wrap_data_key(&spec, None, &key, &|_| Ok(Some(ctx(1))))).unwrap();
    assert!(stored.starts_with("v1:"));
    assert_eq!(
        blocking::run(kms.unwrap_data_key(&spec, None, &stored, &|_| Ok(Some(ctx(1))))).unwrap(),
        key
    );
    let e = blocking::run(kms.unwrap_data_key(&spec, None, &stored, &|_| Ok(Some(ctx(2)))))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DecryptionFailed);
    let e = blocking::run(kms.unwrap_data_key(&spec, None, &stored, &|_| Ok(None))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DecryptionFailed, "missing AAD");
    assert_eq!((kms.stats().encrypts(), kms.stats().decrypts()), (1, 3));
}

#[test]
fn unknown_key_is_unusable() {
    let kms = drongo_kms();
    let spec =
        KeySpec::new().key_id("projects/kmsf/locations/global/keyRings/none/cryptoKeys/none");
    let e = blocking::run(kms.encrypt(&spec, None, b"k", &|_| Ok(None))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyUnusable, "{e}");
}

#[test]
fn legacy_gc_values_read_through_drongo() {
    let kms = drongo_kms();
    let key_id = drongo_key();
    // kms_encrypted 0.x: "$gc$" + base64(short key id) + "$" + base64(ciphertext), AAD = to_json
    let url = kms_fields_tests::drongo_url();
    let p = blocking::run(kms_fields::provider::gcp::GcpProvider::anonymous(&url)).unwrap();
    let ct = blocking::run(kms_fields::Provider::wrap(
        &p,
        &key_id,
        &[4u8; 32],
        Some(&ctx(9).into_legacy()),
    ))
    .unwrap();
    let short: Vec<&str> = key_id.split('/').skip(1).step_by(2).collect();
    let stored = format!(
        "$gc${}${}",
        encoding::mime_encode(format!("{}/cryptoKeyVersions/1", short.join("/")).as_bytes()),
        encoding::mime_encode(&ct)
    );
    let spec = KeySpec::new().key_id(&key_id);
    let key =
        blocking::run(kms.unwrap_data_key(&spec, None, &stored, &|_| Ok(Some(ctx(9))))).unwrap();
    assert_eq!(key.expose_secret(), &[4u8; 32]);
    // issue 19.1: the same value under a model whose spec names another key — the stored key
    // is one the "attacker" controls and the application may use on drongo — is refused
    let spec = KeySpec::new().key_id("projects/other/locations/global/keyRings/x/cryptoKeys/y");
    let calls = kms.stats().decrypts();
    let e = blocking::run(kms.unwrap_data_key(&spec, None, &stored, &|_| Ok(Some(ctx(9)))))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert_eq!(kms.stats().decrypts(), calls, "refused before any KMS call");
}
