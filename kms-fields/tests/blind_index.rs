//! Blind indexes: known answers from an independent implementation (tests/data/
//! gen_blind_index_kat.py: argon2-cffi, hashlib, cryptography), bad inputs, KMS-wrapped master
//! keys, and the async runtime staying responsive while indexes are computed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use kms_fields::blind_index::{
    Algorithm, BidxValue, BlindIndex, Encoding, Expression, IndexKey, MasterKey, normalize,
};
use kms_fields::{EncryptionContext, ErrorKind, KeySpec, Kms, KmsBox};
use serde_json::Value;

fn kat() -> Value {
    serde_json::from_str(include_str!("data/blind_index_kat.json")).expect("KAT parses")
}

fn str_field<'a>(case: &'a Value, name: &str) -> &'a str {
    case[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} missing in {case}"))
}

fn u32_field(case: &Value, name: &str) -> u32 {
    u32::try_from(
        case[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in {case}")),
    )
    .unwrap()
}

/// The Rust index a KAT case describes; presets use the Rust constants (and check they have
/// the parameters the Python generator used).
fn index_for(case: &Value) -> BlindIndex {
    let cost = str_field(case, "cost");
    let algorithm = match str_field(case, "algorithm") {
        "argon2id" => {
            let (t, m) = (u32_field(case, "t"), u32_field(case, "m_kib"));
            let a = match cost {
                "default" => Algorithm::ARGON2ID,
                "slow" => Algorithm::ARGON2ID_SLOW,
                "custom" => Algorithm::argon2id(t, m),
                other => panic!("cost {other}"),
            };
            assert_eq!(a, Algorithm::argon2id(t, m), "preset {cost}");
            a
        }
        "pbkdf2_sha256" => {
            let iterations = u32_field(case, "iterations");
            let a = match cost {
                "default" => Algorithm::PBKDF2_SHA256,
                "slow" => Algorithm::PBKDF2_SHA256_SLOW,
                "custom" => Algorithm::pbkdf2_sha256(iterations),
                other => panic!("cost {other}"),
            };
            assert_eq!(a, Algorithm::pbkdf2_sha256(iterations), "preset {cost}");
            a
        }
        other => panic!("algorithm {other}"),
    };
    let encoding = match str_field(case, "encoding") {
        "base64" => Encoding::Base64,
        "raw" => Encoding::Raw,
        "legacy_base64" => Encoding::LegacyBase64,
        other => panic!("encoding {other}"),
    };
    let mut b = BlindIndex::builder(
        str_field(case, "table").to_owned(),
        str_field(case, "column").to_owned(),
    )
    .algorithm(algorithm)
    .size(case["size"].as_u64().unwrap() as usize)
    .encoding(encoding);
    match case["expression"].as_str() {
        None => {}
        Some("lowercase") => b = b.expression(normalize::lowercase),
        Some("trim_lowercase") => b = b.expression(normalize::trim_lowercase),
        Some(other) => panic!("expression {other}"),
    }
    b.build().unwrap()
}

fn expected(case: &Value) -> BidxValue {
    match case["output_hex"].as_str() {
        Some(hex) => BidxValue::Binary(hex::decode(hex).unwrap()),
        None => BidxValue::Text(str_field(case, "output").to_owned()),
    }
}

fn zero_master() -> MasterKey {
    MasterKey::from_hex(&"0".repeat(64)).unwrap()
}

#[test]
fn index_keys_match_the_gem_and_the_independent_implementation() {
    let data = kat();
    let keys = data["index_keys"].as_array().unwrap();
    assert!(keys.len() >= 3);
    // the gem's documented known answer is the first entry
    assert_eq!(keys[0]["master_key_hex"], "0".repeat(64));
    assert_eq!(
        keys[0]["index_key_hex"],
        "289737bab72fa97b1f4b081cef00d7b7d75034bcf3183c363feaf3e6441777bc"
    );
    for k in keys {
        let master = MasterKey::from_hex(str_field(k, "master_key_hex")).unwrap();
        let (table, column) = (str_field(k, "table"), str_field(k, "column"));
        let derived = IndexKey::derive(&master, table, column).unwrap();
        assert_eq!(
            derived.to_hex().as_str(),
            str_field(k, "index_key_hex"),
            "{k}"
        );
        let index = BlindIndex::new(table.to_owned(), column.to_owned()).unwrap();
        assert_eq!(index.index_key(&master).unwrap(), derived);
        assert_eq!(
            IndexKey::from_hex(str_field(k, "index_key_hex")).unwrap(),
            derived
        );
    }
}

#[test]
fn outputs_match_the_independent_implementation() {
    let data = kat();
    let cases = data["cases"].as_array().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for case in cases {
        let master = MasterKey::from_hex(str_field(case, "master_key_hex")).unwrap();
        let index = index_for(case);
        let value = str_field(case, "value");
        let want = expected(case);
        assert_eq!(index.compute(&master, value).unwrap(), want, "{case}");
        // the same through an explicit index key, and through the typed helpers
        let key = IndexKey::derive(&master, index.table(), index.column()).unwrap();
        assert_eq!(index.compute_with_key(&key, value).unwrap(), want, "{case}");
        match &want {
            BidxValue::Text(t) => assert_eq!(&index.compute_text(&master, value).unwrap(), t),
            BidxValue::Binary(b) => {
                assert_eq!(&index.compute_binary(&master, value).unwrap(), b);
                assert_eq!(b.len(), index.size());
            }
        }
        seen.insert(format!(
            "{}/{}/{}/{}",
            str_field(case, "algorithm"),
            str_field(case, "cost"),
            str_field(case, "encoding"),
            case["size"]
        ));
    }
    // the coverage the vectors promise
    for must in [
        "argon2id/default/base64/32",
        "argon2id/default/base64/16",
        "argon2id/default/raw/32",
        "argon2id/slow/base64/32",
        "argon2id/custom/base64/32",
        "pbkdf2_sha256/default/base64/32",
        "pbkdf2_sha256/default/base64/1",
        "pbkdf2_sha256/default/raw/1",
        "pbkdf2_sha256/slow/base64/32",
        "pbkdf2_sha256/default/legacy_base64/32",
    ] {
        assert!(seen.contains(must), "no vector for {must}");
    }
    assert!(cases.iter().any(|c| !str_field(c, "value").is_ascii()));
    assert!(cases.iter().any(|c| c["expression"] == "lowercase"));
}

#[test]
fn expression_cases_equal_the_normalised_value() {
    // with the expression, "Test@Example.ORG" indexes as "test@example.org" does without it
    let master = zero_master();
    let exact = BlindIndex::new("users", "email_bidx").unwrap();
    let ci = BlindIndex::builder("users", "email_bidx")
        .expression(normalize::lowercase)
        .build()
        .unwrap();
    assert_eq!(
        ci.compute(&master, "Test@Example.ORG").unwrap(),
        exact.compute(&master, "test@example.org").unwrap()
    );
    assert_ne!(
        exact.compute(&master, "Test@Example.ORG").unwrap(),
        exact.compute(&master, "test@example.org").unwrap()
    );
    // any fn (or non-capturing closure) is an expression
    let digits: Expression = |v| v.chars().filter(char::is_ascii_digit).collect();
    let phone = BlindIndex::builder("users", "phone_bidx")
        .algorithm(Algorithm::PBKDF2_SHA256)
        .expression(digits)
        .build()
        .unwrap();
    assert_eq!(
        phone.compute(&master, "+1 (555) 0100").unwrap(),
        phone.compute(&master, "15550100").unwrap()
    );
}

#[test]
fn in_list_and_null() {
    let master = zero_master();
    let index = BlindIndex::builder("users", "email_bidx")
        .algorithm(Algorithm::PBKDF2_SHA256)
        .build()
        .unwrap();
    let many = index
        .compute_many(&master, ["a@x.org", "b@x.org", "a@x.org"])
        .unwrap();
    assert_eq!(many.len(), 3);
    assert_eq!(many[0], many[2]);
    assert_ne!(many[0], many[1]);
    assert_eq!(many[1], index.compute(&master, "b@x.org").unwrap());
    assert!(
        index
            .compute_many(&master, Vec::<String>::new())
            .unwrap()
            .is_empty()
    );
    assert_eq!(index.compute_option(&master, None).unwrap(), None);
    assert_eq!(
        index.compute_option(&master, Some("")).unwrap(),
        Some(index.compute(&master, "").unwrap())
    );
}

#[test]
fn bad_inputs_are_typed_errors_without_key_material() {
    let secret_hex = "c0ffee".repeat(10) + "c0ff"; // 64 hex digits
    let secret = MasterKey::from_hex(&secret_hex).unwrap();
    let mut outputs = vec![format!("{secret:?}")];

    let bad = [
        secret_hex[..63].to_owned(),        // too short
        secret_hex.clone() + "00",          // too long
        secret_hex[..62].to_owned() + "zz", // not hex
        secret_hex[..62].to_owned() + "é",  // not ASCII
        String::new(),
        "v1:bm90LWEta2V5".to_owned(), // wrapped, not hex
    ];
    for text in &bad {
        let e = MasterKey::from_hex(text).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{text:?}: {e}");
        outputs.push(format!("{e} {e:?}"));
    }
    for len in [0usize, 16, 31, 33, 64] {
        let e = MasterKey::from_bytes(&vec![0xC0; len]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        outputs.push(format!("{e} {e:?}"));
        assert_eq!(
            IndexKey::from_bytes(&vec![0xC0; len]).unwrap_err().kind(),
            ErrorKind::Config
        );
    }
    for size in [0usize, 33] {
        for algorithm in [Algorithm::ARGON2ID, Algorithm::PBKDF2_SHA256] {
            let e = BlindIndex::builder("users", "email_bidx")
                .algorithm(algorithm)
                .size(size)
                .build()
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            assert!(e.to_string().contains("between 1 and 32"), "{e}");
            outputs.push(format!("{e} {e:?}"));
        }
    }
    // Argon2 cannot output fewer than 4 bytes (nor can the gem's argon2-kdf)
    let e = BlindIndex::builder("users", "email_bidx")
        .size(3)
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);

    let index = BlindIndex::builder("users", "email_bidx")
        .algorithm(Algorithm::pbkdf2_sha256(1))
        .build()
        .unwrap();
    let key = index.index_key(&secret).unwrap();
    outputs.push(format!("{key:?} {index:?}"));
    let key_hex = key.to_hex();
    for out in &outputs {
        for needle in [&secret_hex[..16], "c0ffeec0", &key_hex[..16]] {
            assert!(!out.contains(needle), "key material in {out:?}");
        }
    }
    assert_eq!(format!("{key:?}"), "IndexKey([REDACTED])");
    assert_eq!(format!("{secret:?}"), "MasterKey([REDACTED])");
}

#[test]
fn env_master_key() {
    // (setting variables needs `unsafe` in edition 2024; this test's child process gets one)
    const CHILD: &str = "KMS_FIELDS_BIDX_ENV_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let key = MasterKey::from_env().unwrap();
        assert_eq!(key.expose_secret(), &[0x11; 32]);
        let e = MasterKey::from_env_var("KMS_FIELDS_BIDX_SURELY_UNSET").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let e = MasterKey::from_env_var("KMS_FIELDS_BIDX_WRAPPED").unwrap_err();
        assert!(e.to_string().contains("MasterKey::resolve"), "{e}");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "env_master_key", "--test-threads=1"])
        .env(CHILD, "1")
        .env(kms_fields::blind_index::MASTER_KEY_ENV, "11".repeat(32))
        .env("KMS_FIELDS_BIDX_WRAPPED", "v1:abcd")
        .env_remove("KMS_FIELDS_BIDX_SURELY_UNSET")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[test]
fn wrapped_master_key_round_trip() {
    let kms = Kms::new();
    let kms_box = KmsBox::new(kms.clone(), KeySpec::new().key_id("insecure-test-key"));
    let ctx = EncryptionContext::from([("purpose", "blind_index_master_key")]);
    let master = MasterKey::generate().unwrap();

    let wrapped = master.wrap_blocking(&kms_box, Some(&ctx)).unwrap();
    assert!(wrapped.starts_with("v1:"), "{wrapped}");
    assert!(!wrapped.contains(master.to_hex().as_str()));
    let unwrapped = MasterKey::from_wrapped_blocking(&kms_box, &wrapped, Some(&ctx)).unwrap();
    assert_eq!(unwrapped, master);
    // resolve takes either form
    assert_eq!(
        MasterKey::resolve_blocking(&wrapped, &kms_box, Some(&ctx)).unwrap(),
        master
    );
    assert_eq!(
        MasterKey::resolve_blocking(&master.to_hex(), &kms_box, Some(&ctx)).unwrap(),
        master
    );
    // the same indexes from the unwrapped key
    let index = BlindIndex::builder("users", "email_bidx")
        .algorithm(Algorithm::pbkdf2_sha256(1))
        .build()
        .unwrap();
    assert_eq!(
        index.compute(&unwrapped, "a@b.c").unwrap(),
        index.compute(&master, "a@b.c").unwrap()
    );
    // a Box value of the 64 hex digits (e.g. `kms-fields box encrypt` of the gem's key) works too
    let hex_wrapped = kms_box
        .encrypt_blocking(master.to_hex().as_bytes(), Some(&ctx))
        .unwrap();
    assert_eq!(
        MasterKey::from_wrapped_blocking(&kms_box, &hex_wrapped, Some(&ctx)).unwrap(),
        master
    );

    // wrong context: the KMS refuses; no key bytes in the error
    let other = EncryptionContext::from([("purpose", "something_else")]);
    let e = MasterKey::from_wrapped_blocking(&kms_box, &wrapped, Some(&other)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DecryptionFailed, "{e}");
    assert!(!format!("{e} {e:?}").contains(&master.to_hex()[..16]));
    // a wrapped value of the wrong length
    let short = kms_box.encrypt_blocking(&[7u8; 16], Some(&ctx)).unwrap();
    let e = MasterKey::from_wrapped_blocking(&kms_box, &short, Some(&ctx)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadFormat, "{e}");
    // malformed stored value
    let e = MasterKey::from_wrapped_blocking(&kms_box, "v1:%%%", Some(&ctx)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadFormat, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapped_master_key_async_and_async_computation() {
    let kms_box = KmsBox::new(Kms::new(), KeySpec::new().key_id("insecure-test-key"));
    let master = MasterKey::generate().unwrap();
    let wrapped = master.wrap(&kms_box, None).await.unwrap();
    let master = MasterKey::from_wrapped(&kms_box, &wrapped, None)
        .await
        .unwrap();

    let data = kat();
    let case = &data["cases"][0]; // argon2id default, zero key
    let index = index_for(case);
    let zero = zero_master();
    assert_eq!(
        index
            .compute_async(&zero, str_field(case, "value"))
            .await
            .unwrap(),
        expected(case)
    );
    let values = ["a@x.org", "b@x.org", "c@x.org", "a@x.org"];
    let got = index.compute_many_async(&master, values).await.unwrap();
    assert_eq!(got, index.compute_many(&master, values).unwrap());
    assert_eq!(got[0], got[3]);
}

/// Counts computations running at once (the expression runs inside each computation).
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn slow_identity(v: &str) -> String {
    let now = ACTIVE.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(15));
    ACTIVE.fetch_sub(1, Ordering::SeqCst);
    v.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallelism_is_bounded_across_calls() {
    let index = BlindIndex::builder("users", "email_bidx")
        .algorithm(Algorithm::pbkdf2_sha256(1))
        .expression(slow_identity)
        .max_parallelism(3)
        .build()
        .unwrap();
    assert_eq!(index.max_parallelism(), 3);
    let master = zero_master();
    let values: Vec<String> = (0..12).map(|i| format!("user{i}@x.org")).collect();
    // two concurrent bulk calls and a single call share the bound of the index (and clones)
    let clone = index.clone();
    let (a, b, c) = tokio::join!(
        index.compute_many_async(&master, &values),
        clone.compute_many_async(&master, values.iter().rev()),
        index.compute_async(&master, "single@x.org"),
    );
    let (a, mut b) = (a.unwrap(), b.unwrap());
    c.unwrap();
    b.reverse();
    assert_eq!(a, b);
    let peak = PEAK.load(Ordering::SeqCst);
    assert!((1..=3).contains(&peak), "peak concurrency {peak}");
}

/// On a current-thread runtime, the 100 Argon2id (default cost) indexes of
/// `compute_many_async` run beside another task. Deterministic, no clock: `join` polls the
/// computation first, then the observer; if the computation ran on the runtime's thread it
/// would finish inside its first poll, before the observer ever runs (the control at the end
/// shows exactly that), so an observer that runs while the computation is unfinished proves the
/// work left the runtime thread.
#[test]
fn runtime_keeps_serving_tasks_during_100_computations() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let index = Arc::new(BlindIndex::new("users", "email_bidx").unwrap());
        let master = zero_master();
        let values: Vec<String> = (0..100).map(|i| format!("user{i}@example.org")).collect();

        let finished = AtomicBool::new(false);
        let computation = async {
            let out = index.compute_many_async(&master, &values).await;
            finished.store(true, Ordering::SeqCst);
            out
        };
        let observer = async {
            let mut runs_while_unfinished = 0usize;
            while !finished.load(Ordering::SeqCst) {
                runs_while_unfinished += 1;
                tokio::task::yield_now().await;
            }
            runs_while_unfinished
        };
        let (out, runs) = futures::future::join(computation, observer).await;
        let out = out.unwrap();
        assert_eq!(out.len(), 100);
        assert_eq!(out[7], index.compute(&master, &values[7]).unwrap());
        eprintln!("the observer ran {runs} times during the 100 indexes");
        assert!(
            runs >= 1,
            "the runtime thread was blocked by the computation"
        );

        // Control: the synchronous method on the runtime thread finishes before the observer
        // runs at all.
        let finished = AtomicBool::new(false);
        let computation = async {
            for v in &values[..3] {
                index.compute(&master, v).unwrap();
            }
            finished.store(true, Ordering::SeqCst);
        };
        let observer = async {
            let mut runs_while_unfinished = 0usize;
            while !finished.load(Ordering::SeqCst) {
                runs_while_unfinished += 1;
                tokio::task::yield_now().await;
            }
            runs_while_unfinished
        };
        let ((), runs) = futures::future::join(computation, observer).await;
        assert_eq!(runs, 0, "the control must block the observer");
    });
}
