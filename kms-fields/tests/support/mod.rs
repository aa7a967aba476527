//! Shared helpers of the core's integration tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use kms_fields::provider::KeyRef;
use kms_fields::{EncryptionContext, Error, ErrorKind, Provider, ProviderKind, Result};
use serde_json::Value;
use zeroize::Zeroizing;

/// The Ruby gems' vectors (a copy of ../shared/vectors/kms_encrypted_lockbox.json).
pub fn vectors() -> Value {
    let text = include_str!("../data/kms_encrypted_lockbox.json");
    serde_json::from_str(text).expect("vectors parse")
}

/// A JSON context object (string or integer values) as an EncryptionContext.
pub fn context_from_json(v: &Value) -> Option<EncryptionContext> {
    let obj = v.as_object()?;
    let mut ctx = EncryptionContext::new();
    for (k, v) in obj {
        ctx = match v {
            Value::Number(n) => ctx.with_int(k.clone(), n.as_i64().expect("int") as i128),
            Value::String(s) => ctx.with(k.clone(), s.clone()),
            other => panic!("unexpected context value {other}"),
        };
    }
    Some(ctx)
}

pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// moto's endpoint. `scripts/test.sh` starts `scripts/moto_kms.py` and exports it.
#[cfg(feature = "aws")]
pub fn moto_url() -> String {
    std::env::var("KMS_FIELDS_MOTO_URL").unwrap_or_else(|_| {
        panic!("KMS_FIELDS_MOTO_URL is not set: run scripts/test.sh, or start `python3 scripts/moto_kms.py --port 5005` and export KMS_FIELDS_MOTO_URL=http://127.0.0.1:5005")
    })
}

/// A real aws-sdk-kms client pointed at moto.
#[cfg(feature = "aws")]
pub async fn moto_client() -> aws_sdk_kms::Client {
    let conf = kms_fields::provider::aws::AwsProvider::default_config()
        .endpoint_url(moto_url())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .load()
        .await;
    aws_sdk_kms::Client::new(&conf)
}

/// Create a fresh symmetric key on moto; returns its ARN.
#[cfg(feature = "aws")]
pub async fn moto_key(client: &aws_sdk_kms::Client) -> String {
    let out = client
        .create_key()
        .description("kms-fields test")
        .send()
        .await
        .expect("CreateKey");
    out.key_metadata()
        .expect("metadata")
        .arn()
        .expect("arn")
        .to_owned()
}

/// A provider-level fault injector. moto does not enforce DisableKey or deletion, so the
/// "disabled key" and "access denied" paths are exercised by wrapping the real provider and
/// failing calls the way the AWS provider maps those responses.
#[derive(Debug)]
pub struct FaultProvider {
    inner: Arc<dyn Provider>,
    pub disabled: AtomicBool,
    pub deny_decrypt: AtomicBool,
}

impl FaultProvider {
    pub fn new(inner: Arc<dyn Provider>) -> Self {
        Self {
            inner,
            disabled: AtomicBool::new(false),
            deny_decrypt: AtomicBool::new(false),
        }
    }

    fn check(&self, decrypt: bool) -> Result<()> {
        if self.disabled.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::KeyUnusable,
                "AWS KMS call failed: DisabledException: key is disabled (injected)",
            ));
        }
        if decrypt && self.deny_decrypt.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::AccessDenied,
                "AWS KMS Decrypt failed: AccessDeniedException (injected)",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for FaultProvider {
    fn kind(&self) -> ProviderKind {
        self.inner.kind()
    }
    async fn wrap(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: Option<&EncryptionContext>,
    ) -> Result<Vec<u8>> {
        self.check(false)?;
        self.inner.wrap(key_id, plaintext, context).await
    }
    async fn unwrap(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: Option<&EncryptionContext>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.check(true)?;
        self.inner.unwrap(key_id, ciphertext, context).await
    }
    async fn rewrap(&self, ciphertext: &[u8], from: KeyRef<'_>, to: KeyRef<'_>) -> Result<Vec<u8>> {
        self.check(true)?;
        self.inner.rewrap(ciphertext, from, to).await
    }
    fn native_rewrap(&self, from: KeyRef<'_>, to: KeyRef<'_>) -> bool {
        self.inner.native_rewrap(from, to)
    }
}
