//! What comes from the environment: the default key id (`KMS_KEY_ID`, as kms_encrypted) and
//! local master keys given in a file (`KMS_FIELDS_LOCAL_KEY_<NAME>_FILE`). Setting variables
//! in-process needs `unsafe` (forbidden here), so each test runs itself again as a child
//! process with the variables set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kms_fields::{DataKey, EncryptionContext, ErrorKind, KeySpec, Kms, blocking};

/// Run test `name` of this binary again with `vars`; it sees `KMS_FIELDS_ENV_CHILD`.
fn rerun_with(name: &str, vars: &[(&str, &str)]) {
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", name, "--test-threads=1"])
        .env("KMS_FIELDS_ENV_CHILD", "1");
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
}

fn child() -> bool {
    std::env::var_os("KMS_FIELDS_ENV_CHILD").is_some()
}

#[test]
fn default_key_id_comes_from_kms_key_id() {
    if !child() {
        return rerun_with(
            "default_key_id_comes_from_kms_key_id",
            &[("KMS_KEY_ID", "insecure-test-key")],
        );
    }
    let spec = KeySpec::new(); // no key id given: KMS_KEY_ID, read when used
    let kms = Kms::new();
    let ctx = EncryptionContext::for_model("User", 1);
    let key = DataKey::generate().unwrap();
    let stored =
        blocking::run(kms.wrap_data_key(&spec, None, &key, &|_| Ok(Some(ctx.clone())))).unwrap();
    // the test key's ciphertext: its fixed prefix, so KMS_KEY_ID picked the test-key provider
    let raw = kms_fields::StoredKey::parse(&stored).unwrap().ciphertext;
    assert!(raw.starts_with(&hex::decode("8a7b1e72eadef9d6ad6be0").unwrap()));
    assert_eq!(
        blocking::run(kms.unwrap_data_key(&spec, None, &stored, &|_| Ok(Some(ctx.clone()))))
            .unwrap(),
        key
    );
    // a named key reads its own variable name only when configured so
    let other = KeySpec::new().key_id_from_env("KMS_FIELDS_SURELY_UNSET_KEY_ID");
    let e = blocking::run(kms.wrap_data_key(&other, None, &key, &|_| Ok(None))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MissingKeyId);
    assert!(
        e.to_string().contains("KMS_FIELDS_SURELY_UNSET_KEY_ID"),
        "{e}"
    );
}

#[test]
fn local_master_keys_from_files() {
    if !child() {
        let dir = tempfile::tempdir().unwrap();
        let hex_file = dir.path().join("billing.hex");
        std::fs::write(&hex_file, format!("{}\n", "ab".repeat(32))).unwrap();
        let raw_file = dir.path().join("raw.key");
        std::fs::write(&raw_file, [0x5au8; 32]).unwrap();
        let short_file = dir.path().join("short.key");
        std::fs::write(&short_file, [1u8; 7]).unwrap();
        return rerun_with(
            "local_master_keys_from_files",
            &[
                (
                    "KMS_FIELDS_LOCAL_KEY_BILLING_FILE",
                    hex_file.to_str().unwrap(),
                ),
                ("KMS_FIELDS_LOCAL_KEY_RAW_FILE", raw_file.to_str().unwrap()),
                (
                    "KMS_FIELDS_LOCAL_KEY_SHORT_FILE",
                    short_file.to_str().unwrap(),
                ),
                (
                    "KMS_FIELDS_LOCAL_KEY_GONE_FILE",
                    "/nonexistent/kms-fields.key",
                ),
            ],
        );
    }
    let kms = Kms::new(); // LocalKey::from_env()
    let ctx = EncryptionContext::for_model("Invoice", 9);
    let key = DataKey::generate().unwrap();
    for name in ["billing", "raw"] {
        let spec = KeySpec::new().key_id(format!("local/{name}"));
        let stored =
            blocking::run(kms.wrap_data_key(&spec, None, &key, &|_| Ok(Some(ctx.clone()))))
                .unwrap();
        assert_eq!(
            blocking::run(kms.unwrap_data_key(&spec, None, &stored, &|_| Ok(Some(ctx.clone()))))
                .unwrap(),
            key
        );
    }
    // the same key given in hex directly decrypts what the file key wrapped
    let direct = Kms::builder()
        .insecure_test_key()
        .local(
            kms_fields::provider::LocalKey::new()
                .with_key("billing", &[0xab; 32])
                .unwrap(),
        )
        .build();
    let spec = KeySpec::new().key_id("local/billing");
    let stored =
        blocking::run(kms.wrap_data_key(&spec, None, &key, &|_| Ok(Some(ctx.clone())))).unwrap();
    assert_eq!(
        blocking::run(direct.unwrap_data_key(&spec, None, &stored, &|_| Ok(Some(ctx.clone()))))
            .unwrap(),
        key
    );
    for (bad, kind) in [
        ("local/short", ErrorKind::Config),
        ("local/gone", ErrorKind::Config),
        ("local/unset", ErrorKind::MissingKeyId),
    ] {
        let e = blocking::run(
            kms.wrap_data_key(&KeySpec::new().key_id(bad), None, &key, &|_| Ok(None)),
        )
        .unwrap_err();
        assert_eq!(e.kind(), kind, "{bad}: {e}");
        assert!(
            !e.to_string().contains("0101010101"),
            "no key bytes in errors"
        );
    }
}

/// Issue 17.3: every malformed variable `Kms::from_env` reads is an error naming it (before,
/// a malformed `BLIND_INDEX_MASTER_KEY` was ignored and later reported as missing).
#[test]
fn malformed_environment_values_are_errors_naming_the_variable() {
    let mut cases: Vec<(&str, &str)> = vec![
        ("BLIND_INDEX_MASTER_KEY", "not hex"),
        ("KMS_FIELDS_INSECURE_TEST_KEY", "yes please"),
        ("KMS_FIELDS_LOCAL_KEY_BILLING", "abc"),
        (
            "KMS_FIELDS_LOCAL_KEY_BILLING_FILE",
            "/nonexistent/kms-fields.key",
        ),
    ];
    if cfg!(feature = "vault") {
        cases.push(("VAULT_ADDR", "http://127.0.0.1:1")); // VAULT_TOKEN missing
    }
    if !child() {
        for (var, value) in &cases {
            rerun_with(
                "malformed_environment_values_are_errors_naming_the_variable",
                &[(var, value), ("KMS_FIELDS_ENV_CASE", var)],
            );
        }
        return rerun_with(
            "malformed_environment_values_are_errors_naming_the_variable",
            &[
                ("KMS_FIELDS_ENV_CASE", "valid"),
                ("BLIND_INDEX_MASTER_KEY", &"ab".repeat(32)),
                ("KMS_FIELDS_INSECURE_TEST_KEY", "1"),
                ("KMS_FIELDS_LOCAL_KEY_BILLING", &"cd".repeat(32)),
            ],
        );
    }
    let case = std::env::var("KMS_FIELDS_ENV_CASE").unwrap();
    if case == "valid" {
        let kms = Kms::from_env().unwrap();
        assert!(kms.blind_index_key(None).is_ok());
        let key = DataKey::generate().unwrap();
        for id in ["insecure-test-key", "local/billing"] {
            let spec = KeySpec::new().key_id(id);
            blocking::run(kms.wrap_data_key(&spec, None, &key, &|_| Ok(None))).unwrap();
        }
        return;
    }
    let e = Kms::from_env().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{case}: {e}");
    let shown = e.to_string();
    let named = if case == "VAULT_ADDR" {
        "VAULT_TOKEN"
    } else {
        case.as_str()
    };
    assert!(shown.contains(named), "{case}: {shown}");
    assert!(!shown.contains("abc"), "the value is not quoted: {shown}");
}
