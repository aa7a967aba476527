//! Legacy (pre-`v1:`) key columns written by kms_encrypted 0.x: `$gc$…` (Google), raw
//! `vault:…`, base64-with-newlines AWS; read as version 1 with the legacy context JSON
//! (insertion order, integer ids unquoted), or with an empty context under `upgrade_context`.
//! Google and Vault routing is checked with a recording provider standing in for those
//! services (no server is involved: only what kms-fields sends is under test here).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kms_fields::{EncryptionContext, KeySpec, Kms, Provider, ProviderKind, Result, encoding};
use zeroize::Zeroizing;

/// One call the recorder saw: key id, ciphertext, context bytes.
type Seen = (String, Vec<u8>, Option<Vec<u8>>);

#[derive(Debug)]
struct Recorder {
    kind: ProviderKind,
    seen: Mutex<Vec<Seen>>,
}

#[async_trait]
impl Provider for Recorder {
    fn kind(&self) -> ProviderKind {
        self.kind
    }
    async fn wrap(&self, _: &str, _: &[u8], _: Option<&EncryptionContext>) -> Result<Vec<u8>> {
        unreachable!("legacy values are only read")
    }
    async fn unwrap(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: Option<&EncryptionContext>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.seen.lock().unwrap().push((
            key_id.to_owned(),
            ciphertext.to_vec(),
            context.map(EncryptionContext::json_bytes),
        ));
        Ok(Zeroizing::new(vec![7; 32]))
    }
}

fn recorder(kind: ProviderKind) -> Arc<Recorder> {
    Arc::new(Recorder {
        kind,
        seen: Mutex::new(Vec::new()),
    })
}

fn ctx() -> EncryptionContext {
    EncryptionContext::for_model("User", 1)
}

#[test]
fn legacy_google_value_carries_its_key_id_and_the_legacy_context() {
    let gcp = recorder(ProviderKind::Gcp);
    let kms = Kms::builder()
        .insecure_test_key()
        .provider(ProviderKind::Gcp, gcp.clone())
        .build();
    let short = encoding::mime_encode(b"my-proj/global/my-ring/my-key/cryptoKeyVersions/3");
    let stored = format!("$gc${short}${}", encoding::mime_encode(b"\x01\x02\x03"));
    // issue 19.1: a value naming a key the spec does not name is refused before any call (a
    // database writer must not choose the key that opens the record)
    let spec = KeySpec::new().key_id("projects/other/locations/global/keyRings/r/cryptoKeys/k");
    let e =
        kms_fields::blocking::run(kms.unwrap_data_key(&spec, None, &stored, &|_| Ok(Some(ctx()))))
            .unwrap_err();
    assert_eq!(e.kind(), kms_fields::ErrorKind::AccessDenied, "{e}");
    assert!(gcp.seen.lock().unwrap().is_empty(), "no KMS call");
    // the spec's key (here a previous version's, with a key version suffix) opens it
    let spec = KeySpec::new()
        .key_id("projects/other/locations/global/keyRings/r/cryptoKeys/k")
        .version(2)
        .previous_version(
            1,
            "projects/my-proj/locations/global/keyRings/my-ring/cryptoKeys/my-key/cryptoKeyVersions/3",
        );
    kms_fields::blocking::run(kms.unwrap_data_key(&spec, None, &stored, &|_| Ok(Some(ctx()))))
        .unwrap();
    let seen = gcp.seen.lock().unwrap();
    assert_eq!(
        seen[0].0,
        "projects/my-proj/locations/global/keyRings/my-ring/cryptoKeys/my-key"
    );
    assert_eq!(seen[0].1, b"\x01\x02\x03");
    assert_eq!(
        seen[0].2.as_deref(),
        Some(&br#"{"model_name":"User","model_id":1}"#[..])
    );
}

#[test]
fn legacy_vault_value_is_sent_as_is_with_the_legacy_context() {
    let vault = recorder(ProviderKind::Vault);
    let kms = Kms::builder()
        .insecure_test_key()
        .provider(ProviderKind::Vault, vault.clone())
        .build();
    let spec = KeySpec::new().key_id("vault/users");
    kms_fields::blocking::run(
        kms.unwrap_data_key(&spec, None, "vault:v1:abcd", &|_| Ok(Some(ctx()))),
    )
    .unwrap();
    let seen = vault.seen.lock().unwrap();
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1.as_slice()),
        ("vault/users", &b"vault:v1:abcd"[..])
    );
    assert_eq!(
        seen[0].2.as_deref(),
        Some(&br#"{"model_name":"User","model_id":1}"#[..])
    );
}

#[test]
fn upgrade_context_reads_legacy_values_with_an_empty_context() {
    let vault = recorder(ProviderKind::Vault);
    let kms = Kms::builder()
        .insecure_test_key()
        .provider(ProviderKind::Vault, vault.clone())
        .build();
    let spec = KeySpec::new().key_id("vault/users").upgrade_context(true);
    kms_fields::blocking::run(
        kms.unwrap_data_key(&spec, None, "vault:v1:abcd", &|_| Ok(Some(ctx()))),
    )
    .unwrap();
    // a current-format value still uses the record's context
    kms_fields::blocking::run(kms.unwrap_data_key(
        &spec,
        None,
        &format!("v1:{}", encoding::strict_encode(b"vault:v1:x")),
        &|_| Ok(Some(ctx())),
    ))
    .unwrap();
    let seen = vault.seen.lock().unwrap();
    assert_eq!(seen[0].2.as_deref(), Some(&b"{}"[..]));
    assert_eq!(
        seen[1].2.as_deref(),
        Some(&br#"{"model_id":"1","model_name":"User"}"#[..])
    );
}

#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread")]
async fn legacy_aws_value_reads_through_moto() {
    use kms_fields::provider::aws::AwsProvider;
    let client = support::moto_client().await;
    let arn = support::moto_key(&client).await;
    let key = [9u8; 32];
    // kms_encrypted 0.x: GenerateDataKey-style blob, context as a plain map, stored base64 with newlines
    let blob = client
        .encrypt()
        .key_id(&arn)
        .plaintext(aws_sdk_kms::primitives::Blob::new(key.to_vec()))
        .encryption_context("model_name", "User")
        .encryption_context("model_id", "1")
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    let stored = encoding::mime_encode(blob.as_ref());
    assert!(stored.contains('\n') && !stored.starts_with('v'));
    let kms = Kms::builder()
        .insecure_test_key()
        .aws(AwsProvider::new(client.clone()))
        .build();
    let spec = KeySpec::new()
        .key_id(&arn)
        .version(2)
        .previous_version(1, &arn);
    let back = kms
        .unwrap_data_key(&spec, None, &stored, &|_| Ok(Some(ctx())))
        .await
        .unwrap();
    assert_eq!(back.expose_secret(), &key);

    // upgrade_context: a legacy value written without context reads with {}
    let bare = client
        .encrypt()
        .key_id(&arn)
        .plaintext(aws_sdk_kms::primitives::Blob::new(key.to_vec()))
        .send()
        .await
        .unwrap();
    let stored = encoding::mime_encode(bare.ciphertext_blob.unwrap().as_ref());
    let upgrading = spec.clone().upgrade_context(true);
    assert_eq!(
        kms.unwrap_data_key(&upgrading, None, &stored, &|_| Ok(Some(ctx())))
            .await
            .unwrap()
            .expose_secret(),
        &key
    );
    assert!(
        kms.unwrap_data_key(&spec, None, &stored, &|_| Ok(Some(ctx())))
            .await
            .is_err(),
        "without upgrade_context the record context is required"
    );
}
