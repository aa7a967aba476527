//! Audit events (one per KMS call, with operation, provider, key id, context, duration and
//! outcome, and no secret), and key versions served by their own providers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use kms_fields::provider::LocalKey;
use kms_fields::{DataKey, EncryptionContext, ErrorKind, KeySpec, Kms, ProviderKind, encoding};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Every event and span of every target at every level (TRACE included): `(target, fields)`.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

/// `(target, [(field, value)])` of one event or span.
type Captured = (String, Vec<(String, String)>);

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push((field.name().to_owned(), value.to_string()));
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields(Vec::new());
        event.record(&mut f);
        let target = event.metadata().target().to_owned();
        self.0.lock().unwrap().push((target, f.0));
    }
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: Context<'_, S>,
    ) {
        let mut f = Fields(vec![("span".into(), attrs.metadata().name().into())]);
        attrs.record(&mut f);
        let target = attrs.metadata().target().to_owned();
        self.0.lock().unwrap().push((target, f.0));
    }
    fn on_record(
        &self,
        _id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _ctx: Context<'_, S>,
    ) {
        let mut f = Fields(Vec::new());
        values.record(&mut f);
        self.0.lock().unwrap().push(("(span record)".into(), f.0));
    }
}

#[test]
fn one_audit_event_per_kms_call_without_secrets() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(
        capture
            .clone()
            .with_filter(tracing_subscriber::filter::LevelFilter::TRACE),
    );
    let _guard = tracing::subscriber::set_default(subscriber);

    let kms = Kms::new();
    let spec = KeySpec::new().key_id("insecure-test-key");
    let key = DataKey::from_slice(&[0x42; 32]).unwrap();
    let ctx = EncryptionContext::for_model("User", 7);
    let c = ctx.clone();
    let stored = kms_fields::blocking::run(
        kms.wrap_data_key(&spec, None, &key, &move |_| Ok(Some(c.clone()))),
    )
    .unwrap();
    let wrong = EncryptionContext::for_model("User", 8);
    let e = kms_fields::blocking::run(
        kms.unwrap_data_key(&spec, None, &stored, &move |_| Ok(Some(wrong.clone()))),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DecryptionFailed);

    let everything = capture.0.lock().unwrap().clone();
    let events: Vec<Vec<(String, String)>> = everything
        .iter()
        .filter(|(target, _)| target == "kms_fields::audit")
        .map(|(_, fields)| fields.clone())
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    let get = |ev: &Vec<(String, String)>, k: &str| {
        ev.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    };
    assert_eq!(get(&events[0], "operation").as_deref(), Some("encrypt"));
    assert_eq!(get(&events[0], "provider").as_deref(), Some("test"));
    assert_eq!(
        get(&events[0], "key_id").as_deref(),
        Some("insecure-test-key")
    );
    assert_eq!(
        get(&events[0], "context").as_deref(),
        Some(r#"{"model_id":"7","model_name":"User"}"#)
    );
    assert_eq!(get(&events[0], "outcome").as_deref(), Some("ok"));
    assert!(get(&events[0], "elapsed_us").is_some());
    assert_eq!(get(&events[1], "operation").as_deref(), Some("decrypt"));
    assert_eq!(
        get(&events[1], "outcome").as_deref(),
        Some("DecryptionFailed")
    );
    // no secret in anything logged, by any crate, at any level
    let all = format!("{everything:?}");
    assert!(
        !all.contains(&encoding::strict_encode(key.expose_secret())),
        "{all}"
    );
    assert!(!all.contains("4242"), "{all}");
    assert!(!all.contains("insecure+data"), "{all}");
}

#[test]
fn a_previous_version_can_have_its_own_provider() {
    // version 1 was wrapped by one master key ("account A"), version 2 by another
    let account_a = Arc::new(LocalKey::new().with_key("k", &[1; 32]).unwrap());
    let account_b = LocalKey::new().with_key("k", &[2; 32]).unwrap();
    let ctx = EncryptionContext::for_model("User", 1);
    let c1 = ctx.clone();
    let v1_kms = Kms::builder()
        .insecure_test_key()
        .local(LocalKey::new().with_key("k", &[1; 32]).unwrap())
        .build();
    let key = DataKey::generate().unwrap();
    let v1 = kms_fields::blocking::run(v1_kms.wrap_data_key(
        &KeySpec::new().key_id("local/k"),
        None,
        &key,
        &move |_| Ok(Some(c1.clone())),
    ))
    .unwrap();

    let kms = Kms::builder().insecure_test_key().local(account_b).build();
    let spec = KeySpec::new()
        .key_id("local/k")
        .version(2)
        .previous_version_with_provider(1, "local/k", account_a);
    let c = ctx.clone();
    let back = kms_fields::blocking::run(
        kms.unwrap_data_key(&spec, None, &v1, &move |_| Ok(Some(c.clone()))),
    )
    .unwrap();
    assert_eq!(back, key, "v1 is read through account A's provider");
    // without it, the default provider (account B) cannot read v1
    let plain = KeySpec::new()
        .key_id("local/k")
        .version(2)
        .previous_version(1, "local/k");
    let c = ctx.clone();
    let e = kms_fields::blocking::run(
        kms.unwrap_data_key(&plain, None, &v1, &move |_| Ok(Some(c.clone()))),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DecryptionFailed);
    // rewrap v1 → v2: unwrap via A, wrap via B (different providers: two calls)
    let c = ctx.clone();
    let v2 = kms_fields::blocking::run(kms.rewrap(&spec, None, &v1, &move |_| Ok(Some(c.clone()))))
        .unwrap();
    assert!(v2.starts_with("v2:"));
    assert_eq!(
        kms.stats()
            .count_for(ProviderKind::Local, kms_fields::Operation::Encrypt),
        1
    );
    let c = ctx.clone();
    assert_eq!(
        kms_fields::blocking::run(
            kms.unwrap_data_key(&spec, None, &v2, &move |_| Ok(Some(c.clone())))
        )
        .unwrap(),
        key
    );
}

#[test]
fn a_version_with_a_custom_context_per_version() {
    // the context can change with the version: v1 rows were written with {model_name, model_id},
    // v2 adds a tenant
    let kms = Kms::new();
    let ctx_for = |v: u32| {
        let base = EncryptionContext::for_model("User", 1);
        Ok(Some(if v >= 2 {
            base.with("tenant", "acme")
        } else {
            base
        }))
    };
    let v1 = kms_fields::blocking::run(kms.encrypt(
        &KeySpec::new().key_id("insecure-test-key"),
        None,
        b"k",
        &ctx_for,
    ))
    .unwrap();
    let spec = KeySpec::new()
        .key_id("insecure-test-key")
        .version(2)
        .previous_version(1, "insecure-test-key");
    let v2 = kms_fields::blocking::run(kms.rewrap(&spec, None, &v1, &ctx_for)).unwrap();
    assert_eq!(
        &kms_fields::blocking::run(kms.decrypt(&spec, None, &v2, &ctx_for)).unwrap()[..],
        b"k"
    );
    let raw = kms_fields::StoredKey::parse(&v2).unwrap().ciphertext;
    assert!(
        String::from_utf8_lossy(&raw).contains(
            &EncryptionContext::for_model("User", 1)
                .with("tenant", "acme")
                .test_key_encoding()
                .trim_end()
                .to_string()
        )
    );
}
