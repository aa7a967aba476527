//! The AWS provider through the real aws-sdk-kms client against moto's KMS server over HTTP.
//! moto enforces encryption contexts and supports ReEncrypt; it does not enforce DisableKey or
//! key deletion, so those paths use the provider-level [`support::FaultProvider`].
#![cfg(feature = "aws")]

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use kms_fields::provider::aws::AwsProvider;
use kms_fields::{DataKey, EncryptionContext, ErrorKind, KeySpec, Kms, KmsBox, Provider};
use support::{FaultProvider, moto_client, moto_key};

fn ctx(id: i64) -> EncryptionContext {
    EncryptionContext::for_model("User", id)
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_and_one_call_each() {
    let client = moto_client().await;
    let arn = moto_key(&client).await;
    let kms = Kms::builder().aws(AwsProvider::new(client)).build();
    let spec = KeySpec::new().key_id(&arn);
    let key = DataKey::generate().unwrap();
    let stored = kms
        .wrap_data_key(&spec, None, &key, &|_| Ok(Some(ctx(1))))
        .await
        .unwrap();
    assert!(stored.starts_with("v1:"));
    let back = kms
        .unwrap_data_key(&spec, None, &stored, &|_| Ok(Some(ctx(1))))
        .await
        .unwrap();
    assert_eq!(back, key);
    assert_eq!((kms.stats().encrypts(), kms.stats().decrypts()), (1, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_or_missing_context_is_decryption_failed() {
    let client = moto_client().await;
    let arn = moto_key(&client).await;
    let kms = Kms::builder().aws(AwsProvider::new(client)).build();
    let spec = KeySpec::new().key_id(&arn);
    let stored = kms
        .encrypt(&spec, None, b"k", &|_| Ok(Some(ctx(1))))
        .await
        .unwrap();
    for wrong in [Some(ctx(2)), None, Some(ctx(1).with("extra", "x"))] {
        let e = kms
            .decrypt(&spec, None, &stored, &move |_| Ok(wrong.clone()))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DecryptionFailed);
        assert_eq!(e.to_string(), "Decryption failed");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reencrypt_moves_to_another_key_and_version() {
    let client = moto_client().await;
    let old = moto_key(&client).await;
    let new = moto_key(&client).await;
    let kms = Kms::builder().aws(AwsProvider::new(client)).build();
    let v1 = KeySpec::new().key_id(&old);
    let key = DataKey::generate().unwrap();
    let stored = kms
        .wrap_data_key(&v1, None, &key, &|_| Ok(Some(ctx(5))))
        .await
        .unwrap();

    let v2 = KeySpec::new()
        .key_id(&new)
        .version(2)
        .previous_version(1, &old);
    let before = kms.stats().decrypts();
    let rewrapped = kms
        .rewrap(&v2, None, &stored, &|_| Ok(Some(ctx(5))))
        .await
        .unwrap();
    assert!(rewrapped.starts_with("v2:"));
    assert_eq!(kms.stats().reencrypts(), 1);
    assert_eq!(
        kms.stats().decrypts(),
        before,
        "ReEncrypt must not fetch the plaintext"
    );
    assert_eq!(
        kms.unwrap_data_key(&v2, None, &rewrapped, &|_| Ok(Some(ctx(5))))
            .await
            .unwrap(),
        key
    );
    // the v2 value is under the new key: a spec that only knows the old key cannot read it
    let only_old = KeySpec::new().key_id(&old).version(2);
    let e = kms
        .unwrap_data_key(&only_old, None, &rewrapped, &|_| Ok(Some(ctx(6))))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DecryptionFailed);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_version_is_not_active() {
    let client = moto_client().await;
    let arn = moto_key(&client).await;
    let kms = Kms::builder().aws(AwsProvider::new(client)).build();
    let spec = KeySpec::new()
        .key_id(&arn)
        .version(2)
        .previous_version(1, &arn);
    let v3 = KeySpec::new().key_id(&arn).version(3);
    let stored = kms
        .encrypt(&v3, None, b"k", &|_| Ok(Some(ctx(1))))
        .await
        .unwrap();
    let e = kms
        .decrypt(&spec, None, &stored, &|_| Ok(Some(ctx(1))))
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "Version not active: 3");
    assert_eq!(
        kms.stats().decrypts(),
        0,
        "no KMS call for an inactive version"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn aliases_and_box_work() {
    let client = moto_client().await;
    let arn = moto_key(&client).await;
    let alias = format!(
        "alias/kmsf-{}",
        DataKey::generate().unwrap().expose_secret()[0..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    client
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&arn)
        .send()
        .await
        .unwrap();
    let b = KmsBox::new(
        Kms::builder().aws(AwsProvider::new(client)).build(),
        KeySpec::new().key_id(&alias),
    );
    let c = EncryptionContext::from([("purpose", "test")]);
    let ct = b.encrypt(b"hello", Some(&c)).await.unwrap();
    assert_eq!(&b.decrypt(&ct, Some(&c)).await.unwrap()[..], b"hello");
    let sealed = b.seal(&"x".repeat(10_000), Some(&c)).await.unwrap();
    assert_eq!(
        b.open::<String>(&sealed, Some(&c)).await.unwrap().len(),
        10_000
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_key_and_access_denied_are_distinct_errors() {
    let client = moto_client().await;
    let arn = moto_key(&client).await;
    let fault = Arc::new(FaultProvider::new(Arc::new(AwsProvider::new(client))));
    let kms = Kms::builder()
        .provider(kms_fields::ProviderKind::Aws, fault.clone())
        .build();
    let spec = KeySpec::new().key_id(&arn);
    let stored = kms
        .encrypt(&spec, None, b"k", &|_| Ok(Some(ctx(1))))
        .await
        .unwrap();

    fault.deny_decrypt.store(true, Ordering::SeqCst);
    let e = kms
        .decrypt(&spec, None, &stored, &|_| Ok(Some(ctx(1))))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied);
    assert!(
        kms.encrypt(&spec, None, b"k", &|_| Ok(Some(ctx(1))))
            .await
            .is_ok(),
        "encrypt-only still encrypts"
    );

    fault.deny_decrypt.store(false, Ordering::SeqCst);
    fault.disabled.store(true, Ordering::SeqCst);
    let e = kms
        .decrypt(&spec, None, &stored, &|_| Ok(Some(ctx(1))))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyUnusable);
    assert!(!e.is_retryable());

    fault.disabled.store(false, Ordering::SeqCst);
    assert_eq!(
        &kms.decrypt(&spec, None, &stored, &|_| Ok(Some(ctx(1))))
            .await
            .unwrap()[..],
        b"k"
    );
    assert_eq!(fault.kind(), kms_fields::ProviderKind::Aws);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_alias_is_key_unusable_and_dead_endpoint_is_retryable() {
    let client = moto_client().await;
    let kms = Kms::builder().aws(AwsProvider::new(client)).build();
    let spec = KeySpec::new().key_id("alias/kms-fields-does-not-exist");
    let e = kms
        .encrypt(&spec, None, b"k", &|_| Ok(None))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyUnusable, "{e}");

    let conf = AwsProvider::default_config()
        .endpoint_url("http://127.0.0.1:9")
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "t", "t", None, None, "static",
        ))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
        .load()
        .await;
    let dead = Kms::builder()
        .aws(AwsProvider::new(aws_sdk_kms::Client::new(&conf)))
        .build();
    let e = dead
        .encrypt(&spec, None, b"k", &|_| Ok(None))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Provider);
    assert!(e.is_retryable(), "{e:?}");
}
