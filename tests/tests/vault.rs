//! The Vault / OpenBao transit provider, through the real vaultrs client over HTTP, against the
//! transit STAND-IN in tests/standins/vault_transit.py (no Vault or OpenBao server can be
//! installed here; the stand-in follows Vault's documented API and shares no code with the
//! provider).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kms_fields::provider::vault::VaultProvider;
use kms_fields::{
    DataKey, EncryptionContext, ErrorKind, KeySpec, Kms, KmsBox, StoredKey, blocking, bulk,
};
use kms_fields_tests::models::User;
use kms_fields_tests::{VaultStandin, vault_post, vault_provider, vault_requests, vault_url};

fn ctx(id: i64) -> EncryptionContext {
    EncryptionContext::for_model("User", id)
}

fn kms_with(p: VaultProvider) -> Kms {
    Kms::builder().vault(p).build()
}

#[test]
fn round_trip_stores_vault_ciphertext() {
    let kms = kms_with(vault_provider("root"));
    let spec = KeySpec::new().key_id("vault/users");
    let key = DataKey::generate().unwrap();
    let stored =
        blocking::run(kms.wrap_data_key(&spec, None, &key, &|_| Ok(Some(ctx(1))))).unwrap();
    assert!(stored.starts_with("v1:dmF1bHQ6"), "{stored}");
    let inner = String::from_utf8(StoredKey::parse(&stored).unwrap().ciphertext).unwrap();
    assert!(inner.starts_with("vault:v1:"), "{inner}");
    assert_eq!(
        blocking::run(kms.unwrap_data_key(&spec, None, &stored, &|_| Ok(Some(ctx(1))))).unwrap(),
        key
    );
}

#[test]
fn wrong_context_fails() {
    let kms = kms_with(vault_provider("root"));
    let spec = KeySpec::new().key_id("vault/users");
    let stored = blocking::run(kms.encrypt(&spec, None, b"k", &|_| Ok(Some(ctx(1))))).unwrap();
    let e = blocking::run(kms.decrypt(&spec, None, &stored, &|_| Ok(Some(ctx(2))))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DecryptionFailed);
    assert_eq!(e.to_string(), "Decryption failed");
}

#[test]
fn rotate_then_rewrap_moves_to_the_new_vault_version_and_min_decryption_version_retires_the_old() {
    let p = vault_provider("root");
    let mount = format!("{p:?}")
        .split("mount: \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let kms = kms_with(p.clone());
    let spec = KeySpec::new().key_id("vault/users");
    let key = DataKey::generate().unwrap();
    let v1 = blocking::run(kms.wrap_data_key(&spec, None, &key, &|_| Ok(Some(ctx(7))))).unwrap();
    blocking::block_on(vaultrs::transit::key::rotate(p.client(), &mount, "users"))
        .unwrap()
        .unwrap();
    let v2 = blocking::run(kms.rewrap(&spec, None, &v1, &|_| Ok(Some(ctx(7))))).unwrap();
    assert_eq!(kms.stats().reencrypts(), 1, "native transit rewrap");
    assert_eq!(kms.stats().decrypts(), 0, "no plaintext left Vault");
    let inner = String::from_utf8(StoredKey::parse(&v2).unwrap().ciphertext).unwrap();
    assert!(inner.starts_with("vault:v2:"), "{inner}");
    assert_eq!(
        blocking::run(kms.unwrap_data_key(&spec, None, &v2, &|_| Ok(Some(ctx(7))))).unwrap(),
        key
    );

    let mut cfg = vaultrs::api::transit::requests::UpdateKeyConfigurationRequest::builder();
    cfg.min_decryption_version(2u64);
    blocking::block_on(vaultrs::transit::key::update(
        p.client(),
        &mount,
        "users",
        Some(&mut cfg),
    ))
    .unwrap()
    .unwrap();
    let e =
        blocking::run(kms.unwrap_data_key(&spec, None, &v1, &|_| Ok(Some(ctx(7))))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyUnusable);
    assert!(e.to_string().contains("min_decryption_version"), "{e}");
    assert!(blocking::run(kms.unwrap_data_key(&spec, None, &v2, &|_| Ok(Some(ctx(7))))).is_ok());
}

#[test]
fn a_batch_of_1000_uses_batch_input() {
    let p = vault_provider("root");
    let mount = format!("{p:?}")
        .split("mount: \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let kms = kms_with(p);
    let mut records: Vec<kms_fields_tests::models::VaultUser> = (1..=1000)
        .map(|i| {
            let mut u = kms_fields_tests::models::VaultUser {
                id: Some(i),
                ..Default::default()
            };
            u.set_email_blocking(&kms, Some(&format!("u{i}@example.org")))
                .unwrap();
            u
        })
        .collect();
    let sealed = blocking::block_on(bulk::seal_many(&kms, &mut records, 8)).unwrap();
    assert!(sealed.iter().all(|r| matches!(r, Ok(1))));
    let fresh: Vec<kms_fields_tests::models::VaultUser> = records
        .iter()
        .map(|u| kms_fields_tests::models::VaultUser {
            id: u.id,
            email_enc: u.email_enc.clone(),
            encrypted_kms_key: kms_fields_diesel::KmsKey::from_stored(
                u.encrypted_kms_key.stored().map(str::to_owned),
            ),
        })
        .collect();
    let reader = kms_with(
        VaultProvider::connect(&vault_url(), "root", None)
            .unwrap()
            .mount(&mount),
    );
    let results = blocking::block_on(bulk::unlock_many(&reader, &fresh, 8)).unwrap();
    assert!(
        results.iter().all(|r| r.is_ok()),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    assert_eq!(
        fresh[999].email_blocking(&reader).unwrap().as_deref(),
        Some("u1000@example.org")
    );
    assert_eq!(reader.stats().decrypts(), 1000, "counted per record key");
    let log = vault_requests();
    let calls = |op: &str| {
        log.iter()
            .filter(|r| r["path"].as_str().unwrap_or_default() == format!("/v1/{mount}/{op}/users"))
            .count()
    };
    assert_eq!(calls("encrypt"), 4, "1000 wraps in 4 batch requests");
    assert_eq!(calls("decrypt"), 4, "1000 unwraps in 4 batch requests");
    // one wrong context in a batch fails that record only
    let mut broken = fresh.clone();
    for u in &mut broken {
        u.encrypted_kms_key =
            kms_fields_diesel::KmsKey::from_stored(u.encrypted_kms_key.stored().map(str::to_owned));
    }
    broken[10].id = Some(99_999);
    let r = blocking::block_on(bulk::unlock_many(&reader, &broken, 8)).unwrap();
    assert_eq!(r.iter().filter(|x| x.is_err()).count(), 1);
    assert_eq!(
        r[10].as_ref().unwrap_err().kind(),
        ErrorKind::DecryptionFailed
    );
}

#[test]
fn encrypt_only_token_cannot_decrypt() {
    let writer = vault_provider("encrypt-only");
    let kms = kms_with(writer);
    let spec = KeySpec::new().key_id("vault/users");
    let stored = blocking::run(kms.encrypt(&spec, None, b"k", &|_| Ok(Some(ctx(1))))).unwrap();
    let e = blocking::run(kms.decrypt(&spec, None, &stored, &|_| Ok(Some(ctx(1))))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied);
}

#[test]
fn context_hash_is_the_audit_hmac_of_exactly_the_sent_context() {
    let p = vault_provider("root");
    let audit = kms_fields_tests::db::unique("file");
    vault_post(&format!("v1/sys/audit/{audit}"), r#"{"type":"file"}"#);
    let kms = kms_with(p.clone());
    let c = EncryptionContext::for_model("User", 42);
    blocking::run(
        kms.encrypt(&KeySpec::new().key_id("vault/users"), None, b"k", &|_| {
            Ok(Some(c.clone()))
        }),
    )
    .unwrap();
    let sent = vault_requests()
        .into_iter()
        .rev()
        .find(|r| {
            r["path"]
                .as_str()
                .unwrap_or_default()
                .ends_with("/encrypt/users")
        })
        .unwrap()["body"]["context"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(sent, c.vault_context());
    let ours = blocking::run(p.context_hash(&c, &audit)).unwrap();
    let audited = vault_post(
        &format!("v1/sys/audit-hash/{audit}"),
        &serde_json::json!({"input": sent}).to_string(),
    );
    assert_eq!(Some(ours.as_str()), audited["hash"].as_str());
    assert!(ours.starts_with("hmac-sha256:"));
    // kms_encrypted hashes Base64.encode64 of the unsorted, unstringified JSON: another hash
    let gem_input = format!(
        "{}\n",
        kms_fields::encoding::strict_encode(br#"{"model_name":"User","model_id":42}"#)
    );
    let gem = vault_post(
        &format!("v1/sys/audit-hash/{audit}"),
        &serde_json::json!({"input": gem_input}).to_string(),
    );
    assert_ne!(Some(ours.as_str()), gem["hash"].as_str());
}

/// Response-shape drift: Vault's and OpenBao's API docs show `sys/audit-hash` answering
/// `{"hash": …}` at the top level, the generic response envelope carries it as `data.hash`, and
/// the stand-in's default sends both. `context_hash` must read each; with neither it is an error.
/// A private stand-in (this tree's script), because the switch applies to every request.
#[test]
fn context_hash_reads_the_hash_in_each_response_shape() {
    let standin = VaultStandin::start();
    standin.post("v1/sys/audit/file", r#"{"type":"file"}"#);
    let p = VaultProvider::connect(&standin.url, "root", None).unwrap();
    let c = ctx(42);
    let input = serde_json::json!({"input": c.vault_context()}).to_string();
    let both = standin.post("v1/sys/audit-hash/file", &input);
    let want = both["hash"].as_str().unwrap().to_owned();
    assert!(want.starts_with("hmac-sha256:"), "{both}");
    assert_eq!(both["data"]["hash"].as_str(), Some(want.as_str()), "{both}");
    for (shape, top_level, in_data) in [
        ("top", true, false),
        ("data", false, true),
        ("both", true, true),
    ] {
        standin.post(
            "_standin/shape",
            &serde_json::json!({ "audit_hash": shape }).to_string(),
        );
        // the stand-in really answers in that shape ...
        let raw = standin.post("v1/sys/audit-hash/file", &input);
        assert_eq!(raw.get("hash").is_some(), top_level, "{shape}: {raw}");
        assert_eq!(raw["data"].get("hash").is_some(), in_data, "{shape}: {raw}");
        // ... and the provider finds the same hash in it
        assert_eq!(
            blocking::run(p.context_hash(&c, "file")).unwrap(),
            want,
            "{shape}"
        );
    }
    standin.post("_standin/shape", r#"{"audit_hash":"none"}"#);
    let e = blocking::run(p.context_hash(&c, "file")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Provider);
    assert_eq!(e.to_string(), "Vault audit-hash returned no hash");
}

#[test]
fn namespace_header_and_retryable_server_errors() {
    let p = vault_provider("root");
    let mount = format!("{p:?}")
        .split("mount: \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let ns = kms_fields_tests::db::unique("ns");
    let kms = kms_with(
        VaultProvider::connect(&vault_url(), "root", Some(&ns))
            .unwrap()
            .mount(&mount),
    );
    let spec = KeySpec::new().key_id("vault/users");
    blocking::run(kms.encrypt(&spec, None, b"k", &|_| Ok(Some(ctx(1))))).unwrap();
    assert!(
        vault_requests()
            .iter()
            .any(|r| r["namespace"].as_str() == Some(ns.as_str()))
    );
    // scoped to this test's namespace: other tests share the stand-in
    vault_post(
        "_standin/fail",
        &serde_json::json!({"status": 503, "count": 1, "namespace": ns}).to_string(),
    );
    let e = blocking::run(kms.encrypt(&spec, None, b"k", &|_| Ok(Some(ctx(1))))).unwrap_err();
    assert_eq!(
        (e.kind(), e.is_retryable()),
        (ErrorKind::Provider, true),
        "{e}"
    );
    let dead = kms_with(VaultProvider::connect("http://127.0.0.1:9", "root", None).unwrap());
    let e = blocking::run(dead.encrypt(&spec, None, b"k", &|_| Ok(Some(ctx(1))))).unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
}

#[test]
fn legacy_raw_vault_values_read_with_the_legacy_context() {
    let p = vault_provider("root");
    let kms = kms_with(p.clone());
    // kms_encrypted 0.x stored the raw vault:v1:… string, with the unsorted, unquoted-id JSON
    let legacy_ctx = ctx(5).into_legacy();
    let raw = blocking::run(kms_fields::Provider::wrap(
        &p,
        "vault/users",
        &[3u8; 32],
        Some(&legacy_ctx),
    ))
    .unwrap();
    let stored = String::from_utf8(raw).unwrap();
    assert!(stored.starts_with("vault:v1:"));
    let key = blocking::run(kms.unwrap_data_key(
        &KeySpec::new().key_id("vault/users"),
        None,
        &stored,
        &|_| Ok(Some(ctx(5))),
    ))
    .unwrap();
    assert_eq!(key.expose_secret(), &[3u8; 32]);
}

#[test]
fn box_through_vault() {
    let b = KmsBox::new(
        kms_with(vault_provider("root")),
        KeySpec::new().key_id("vault/users"),
    );
    let c = EncryptionContext::from([("purpose", "export")]);
    let ct = b.encrypt_blocking(b"hello", Some(&c)).unwrap();
    assert_eq!(&b.decrypt_blocking(&ct, Some(&c)).unwrap()[..], b"hello");
    let _ = User::default();
}
