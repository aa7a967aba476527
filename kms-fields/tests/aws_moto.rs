//! The AWS provider through the real aws-sdk-kms client against moto's KMS server over HTTP.
//! moto enforces encryption contexts and supports ReEncrypt; it does not enforce DisableKey or
//! key deletion, so those paths use the provider-level [`support::FaultProvider`].
//! Built only with the `aws` feature (`required-features` in Cargo.toml): without it the
//! target is not built at all, rather than an empty binary reporting "0 tests, ok";
//! `cargo test --test aws_moto` without the feature is an error naming it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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
    let kms = Kms::builder()
        .insecure_test_key()
        .aws(AwsProvider::new(client))
        .build();
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
    let kms = Kms::builder()
        .insecure_test_key()
        .aws(AwsProvider::new(client))
        .build();
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
    let kms = Kms::builder()
        .insecure_test_key()
        .aws(AwsProvider::new(client))
        .build();
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
    // the v2 value is under the new key: KMS says which key decrypted it, and the old key
    // refuses it (moto: a KeyId that is not the blob's is AccessDenied)
    let blob = kms_fields::StoredKey::parse(&rewrapped).unwrap().ciphertext;
    let client = moto_client().await;
    let aws_ctx: std::collections::HashMap<String, String> = [
        ("model_id".to_owned(), "5".to_owned()),
        ("model_name".to_owned(), "User".to_owned()),
    ]
    .into();
    let out = client
        .decrypt()
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(blob.clone()))
        .set_encryption_context(Some(aws_ctx.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.key_id(), Some(new.as_str()));
    let refused = client
        .decrypt()
        .key_id(&old)
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(blob))
        .set_encryption_context(Some(aws_ctx))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "the old key cannot decrypt the re-encrypted value"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_version_is_not_active() {
    let client = moto_client().await;
    let arn = moto_key(&client).await;
    let kms = Kms::builder()
        .insecure_test_key()
        .aws(AwsProvider::new(client))
        .build();
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
        Kms::builder()
            .insecure_test_key()
            .aws(AwsProvider::new(client))
            .build(),
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
        .insecure_test_key()
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
    let kms = Kms::builder()
        .insecure_test_key()
        .aws(AwsProvider::new(client))
        .build();
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
        .insecure_test_key()
        .aws(AwsProvider::new(aws_sdk_kms::Client::new(&conf)))
        .build();
    let e = dead
        .encrypt(&spec, None, b"k", &|_| Ok(None))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Provider);
    assert!(e.is_retryable(), "{e:?}");
}

/// A STAND-IN for the AWS KMS endpoint that answers every request with one KMS error (status
/// and `__type`), for the error paths moto does not produce (disabled or pending-deletion
/// keys, throttling). The real aws-sdk-kms client parses the responses over HTTP, so this
/// tests the provider's error mapping end to end.
fn fault_endpoint(status: u16, error_type: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 65536];
            let mut req = Vec::new();
            // read headers and the body announced by Content-Length
            loop {
                let n = conn.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req);
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if req.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let body =
                format!("{{\"__type\":\"{error_type}\",\"message\":\"injected {error_type}\"}}");
            let _ = write!(
                conn,
                "HTTP/1.1 {status} Error\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread")]
async fn kms_error_responses_map_to_error_kinds_over_http() {
    let cases = [
        (400, "DisabledException", ErrorKind::KeyUnusable, false),
        (
            400,
            "KMSInvalidStateException",
            ErrorKind::KeyUnusable,
            false,
        ),
        (400, "NotFoundException", ErrorKind::KeyUnusable, false),
        (400, "AccessDeniedException", ErrorKind::AccessDenied, false),
        (
            400,
            "InvalidCiphertextException",
            ErrorKind::DecryptionFailed,
            false,
        ),
        (400, "ThrottlingException", ErrorKind::Provider, true),
        (500, "KMSInternalException", ErrorKind::Provider, true),
    ];
    for (status, error_type, kind, retryable) in cases {
        let conf = AwsProvider::default_config()
            .endpoint_url(fault_endpoint(status, error_type))
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_kms::config::Credentials::new(
                "t", "t", None, None, "static",
            ))
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .load()
            .await;
        let kms = Kms::builder()
            .insecure_test_key()
            .aws(AwsProvider::new(aws_sdk_kms::Client::new(&conf)))
            .build();
        let spec = KeySpec::new().key_id("alias/users");
        let e = kms
            .decrypt(&spec, None, "v1:AAAA", &|_| Ok(Some(ctx(1))))
            .await
            .unwrap_err();
        assert_eq!(
            (e.kind(), e.is_retryable()),
            (kind, retryable),
            "{error_type}: {e:?}"
        );
        assert!(!e.to_string().contains("AAAA"), "no ciphertext in errors");
    }
}
