//! AWS KMS (feature `aws`), through the official `aws-sdk-kms` client.
//!
//! - wrap = `Encrypt` (never `GenerateDataKey`: the data key comes from the local CSPRNG, so the
//!   stored blob is the same as kms_encrypted's), unwrap = `Decrypt`, re-wrap = `ReEncrypt`
//!   (the data key never leaves KMS);
//! - the context is sent as `EncryptionContext`, values as strings;
//! - configuration from the standard AWS chain (credentials, region, `AWS_ENDPOINT_URL`), or
//!   a client you build (another account, another region, an endpoint override);
//! - timeouts: 2 s to connect, 5 s per attempt, 3 attempts with the SDK's standard retry mode;
//! - strict mode (AWS Encryption SDK's term): `Decrypt` always names the `KeyId` and
//!   `ReEncrypt` the `SourceKeyId` the key spec gives for the stored version, so a blob an
//!   attacker with database write access wrapped under a KMS key *they* control is refused
//!   (`IncorrectKeyException` on AWS; moto answers `AccessDeniedException`) even when the
//!   application's role may decrypt with that key — it is never opened nor laundered by a
//!   re-wrap under the real key.
//!
//! Errors: `InvalidCiphertextException` / `IncorrectKeyException` → `DecryptionFailed`;
//! `AccessDeniedException` → `AccessDenied`; `DisabledException`,
//! `KMSInvalidStateException`, `NotFoundException`, `KeyUnavailableException` → `KeyUnusable`;
//! throttling, `KMSInternalException`, `DependencyTimeoutException`, timeouts and connection
//! failures → retryable `Provider`; anything else → `Provider`.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

use super::{KeyRef, Provider, ProviderKind};
use crate::context::EncryptionContext;
use crate::error::{Error, ErrorKind, Result};

/// The AWS KMS provider.
pub struct AwsProvider {
    client: OnceCell<Client>,
    /// Aliases resolved to key ARNs (DescribeKey, once per alias).
    arns: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl AwsProvider {
    /// Use this client (its region, credentials and endpoint).
    pub fn new(client: Client) -> Self {
        Self {
            client: OnceCell::from(client),
            arns: Default::default(),
        }
    }

    /// Build the client from the standard AWS configuration on first use.
    pub fn lazy_from_env() -> Self {
        Self {
            client: OnceCell::new(),
            arns: Default::default(),
        }
    }

    /// Load the standard AWS configuration now, with kms-fields' timeouts and retries.
    pub async fn from_env() -> Self {
        Self::new(Client::new(&Self::default_config().load().await))
    }

    /// The config loader kms-fields uses: the standard chain plus timeouts and retries.
    /// Adjust it (endpoint, region, credentials) and pass the client to [`AwsProvider::new`].
    pub fn default_config() -> aws_config::ConfigLoader {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .build(),
            )
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async { Client::new(&Self::default_config().load().await) })
            .await
    }

    /// Check that `returned` (the key ARN a Decrypt or ReEncrypt answered with) is the key
    /// `expected` names: an ARN, a key id, or an alias (resolved once with DescribeKey).
    async fn check_key(&self, op: &str, expected: &str, returned: Option<&str>) -> Result<()> {
        let Some(returned) = returned else {
            return Err(Error::new(
                ErrorKind::Provider,
                format!("AWS KMS {op} did not say which key it used"),
            ));
        };
        let same = if expected.starts_with("arn:") && !expected.contains(":alias/") {
            returned == expected
        } else if !expected.contains("alias/") {
            returned.ends_with(&format!(":key/{expected}"))
        } else {
            let cached = self
                .arns
                .lock()
                .map_err(|_| Error::new(ErrorKind::Provider, "AWS alias cache poisoned"))?
                .get(expected)
                .cloned();
            let arn = match cached {
                Some(arn) => arn,
                None => {
                    let out = self
                        .client()
                        .await
                        .describe_key()
                        .key_id(expected)
                        .send()
                        .await
                        .map_err(|e| map_error("DescribeKey", expected, e))?;
                    let arn = out.key_metadata.and_then(|m| m.arn).ok_or_else(|| {
                        Error::new(ErrorKind::Provider, "DescribeKey returned no ARN")
                    })?;
                    if let Ok(mut m) = self.arns.lock() {
                        m.insert(expected.to_owned(), arn.clone());
                    }
                    arn
                }
            };
            returned == arn
        };
        if same {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::AccessDenied,
                format!(
                    "AWS KMS {op}: the stored value was wrapped under another KMS key than {expected}: refused (a forged key column?)"
                ),
            ))
        }
    }
}

fn context_map(context: Option<&EncryptionContext>) -> Option<HashMap<String, String>> {
    context
        .filter(|c| !c.is_empty())
        .map(|c| c.sorted_pairs().into_iter().collect())
}

/// The modeled error variants of the operations used, classified by type (the error code
/// string is the fallback for unmodeled ones such as `AccessDeniedException`).
pub(crate) trait Classify {
    fn classify(&self) -> Option<(ErrorKind, bool)>;
}

macro_rules! classify {
    ($ty:ty { $($is:ident => $kind:expr, $retry:expr;)* }) => {
        impl Classify for $ty {
            fn classify(&self) -> Option<(ErrorKind, bool)> {
                $(if self.$is() { return Some(($kind, $retry)); })*
                None
            }
        }
    };
}

classify!(aws_sdk_kms::operation::encrypt::EncryptError {
    is_disabled_exception => ErrorKind::KeyUnusable, false;
    is_kms_invalid_state_exception => ErrorKind::KeyUnusable, false;
    is_not_found_exception => ErrorKind::KeyUnusable, false;
    is_key_unavailable_exception => ErrorKind::KeyUnusable, false;
    is_kms_internal_exception => ErrorKind::Provider, true;
    is_dependency_timeout_exception => ErrorKind::Provider, true;
});
classify!(aws_sdk_kms::operation::decrypt::DecryptError {
    is_invalid_ciphertext_exception => ErrorKind::DecryptionFailed, false;
    is_incorrect_key_exception => ErrorKind::DecryptionFailed, false;
    is_disabled_exception => ErrorKind::KeyUnusable, false;
    is_kms_invalid_state_exception => ErrorKind::KeyUnusable, false;
    is_not_found_exception => ErrorKind::KeyUnusable, false;
    is_key_unavailable_exception => ErrorKind::KeyUnusable, false;
    is_kms_internal_exception => ErrorKind::Provider, true;
    is_dependency_timeout_exception => ErrorKind::Provider, true;
});
classify!(aws_sdk_kms::operation::describe_key::DescribeKeyError {
    is_not_found_exception => ErrorKind::KeyUnusable, false;
    is_kms_internal_exception => ErrorKind::Provider, true;
    is_dependency_timeout_exception => ErrorKind::Provider, true;
});
classify!(aws_sdk_kms::operation::re_encrypt::ReEncryptError {
    is_invalid_ciphertext_exception => ErrorKind::DecryptionFailed, false;
    is_incorrect_key_exception => ErrorKind::DecryptionFailed, false;
    is_disabled_exception => ErrorKind::KeyUnusable, false;
    is_kms_invalid_state_exception => ErrorKind::KeyUnusable, false;
    is_not_found_exception => ErrorKind::KeyUnusable, false;
    is_key_unavailable_exception => ErrorKind::KeyUnusable, false;
    is_kms_internal_exception => ErrorKind::Provider, true;
    is_dependency_timeout_exception => ErrorKind::Provider, true;
});

/// Map an SDK error to a kms-fields error (no request data is included).
pub(crate) fn map_error<E, R>(op: &str, key_id: &str, err: SdkError<E, R>) -> Error
where
    E: Classify + ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    let typed = match &err {
        SdkError::ServiceError(se) => se.err().classify(),
        _ => None,
    };
    let code = err.code().unwrap_or("").to_owned();
    let message = err.message().unwrap_or("").to_owned();
    let (kind, retryable) = match &err {
        SdkError::ServiceError(_) if typed.is_some() => {
            typed.unwrap_or((ErrorKind::Provider, false))
        }
        SdkError::ServiceError(_) => match code.as_str() {
            "InvalidCiphertextException" | "IncorrectKeyException" => {
                (ErrorKind::DecryptionFailed, false)
            }
            "AccessDeniedException" => (ErrorKind::AccessDenied, false),
            "DisabledException"
            | "KMSInvalidStateException"
            | "KMSInvalidStateFault"
            | "NotFoundException"
            | "KeyUnavailableException" => (ErrorKind::KeyUnusable, false),
            "ThrottlingException"
            | "LimitExceededException"
            | "KMSInternalException"
            | "DependencyTimeoutException" => (ErrorKind::Provider, true),
            _ => (ErrorKind::Provider, false),
        },
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            (ErrorKind::Provider, true)
        }
        _ => (ErrorKind::Provider, false),
    };
    let detail = code
        .is_empty()
        .then(|| aws_sdk_kms::error::DisplayErrorContext(&err).to_string());
    if let Some(d) = &detail
        && is_missing_credentials(d)
    {
        // a configuration error, the same for every call: say what to set, not retryable
        return Error::new(
            ErrorKind::AccessDenied,
            format!(
                "AWS KMS {op} with key {key_id} failed: no AWS credentials were found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an instance or task role)"
            ),
        )
        .with_source(err);
    }
    let text = match kind {
        ErrorKind::DecryptionFailed => "Decryption failed".to_owned(),
        _ if code.is_empty() => format!(
            "AWS KMS {op} with key {key_id} failed: {}",
            shorten(detail.as_deref().unwrap_or_default(), 300)
        ),
        _ if message.is_empty() => format!("AWS KMS {op} with key {key_id} failed: {code}"),
        _ => format!("AWS KMS {op} with key {key_id} failed: {code}: {message}"),
    };
    Error::new(kind, text).retryable(retryable).with_source(err)
}

/// Whether an SDK error's text says the credential chain found nothing.
fn is_missing_credentials(detail: &str) -> bool {
    detail.contains("CredentialsNotLoaded")
        || detail.contains("no credentials")
        || detail.contains("failed to load credentials")
}

/// At most `max` bytes of `text` (at a character boundary), with `…` when cut: SDK error
/// chains can be kilobytes long and are repeated once per failing row.
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[async_trait]
impl Provider for AwsProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Aws
    }

    async fn wrap(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: Option<&EncryptionContext>,
    ) -> Result<Vec<u8>> {
        let out = self
            .client()
            .await
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(plaintext))
            .set_encryption_context(context_map(context))
            .send()
            .await
            .map_err(|e| map_error("Encrypt", key_id, e))?;
        out.ciphertext_blob.map(Blob::into_inner).ok_or_else(|| {
            Error::new(
                ErrorKind::Provider,
                "AWS KMS Encrypt returned no ciphertext",
            )
        })
    }

    async fn unwrap(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: Option<&EncryptionContext>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let out = self
            .client()
            .await
            .decrypt()
            // strict mode: only the key the model names may open it (an attacker's blob
            // under a key they control is refused, even where the role may use that key)
            .key_id(key_id)
            .ciphertext_blob(Blob::new(ciphertext))
            .set_encryption_context(context_map(context))
            .send()
            .await
            .map_err(|e| map_error("Decrypt", key_id, e))?;
        let plaintext = out.plaintext.map(|b| Zeroizing::new(b.into_inner()));
        self.check_key("Decrypt", key_id, out.key_id.as_deref())
            .await?;
        plaintext
            .ok_or_else(|| Error::new(ErrorKind::Provider, "AWS KMS Decrypt returned no plaintext"))
    }

    async fn rewrap(&self, ciphertext: &[u8], from: KeyRef<'_>, to: KeyRef<'_>) -> Result<Vec<u8>> {
        let out = self
            .client()
            .await
            .re_encrypt()
            // strict mode: never launder a blob of another key under the real one
            .source_key_id(from.key_id)
            .ciphertext_blob(Blob::new(ciphertext))
            .set_source_encryption_context(context_map(from.context))
            .destination_key_id(to.key_id)
            .set_destination_encryption_context(context_map(to.context))
            .send()
            .await
            .map_err(|e| map_error("ReEncrypt", to.key_id, e))?;
        // moto does not enforce SourceKeyId: check the key the blob really came from
        self.check_key("ReEncrypt", from.key_id, out.source_key_id.as_deref())
            .await?;
        out.ciphertext_blob.map(Blob::into_inner).ok_or_else(|| {
            Error::new(
                ErrorKind::Provider,
                "AWS KMS ReEncrypt returned no ciphertext",
            )
        })
    }

    fn native_rewrap(&self, _from: KeyRef<'_>, _to: KeyRef<'_>) -> bool {
        true
    }
}

impl fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let region = self
            .client
            .get()
            .and_then(|c| c.config().region().map(|r| r.to_string()));
        f.debug_struct("AwsProvider")
            .field("region", &region)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kms::operation::decrypt::DecryptError;
    use aws_sdk_kms::types::error::{
        DisabledException, IncorrectKeyException, InvalidCiphertextException, KmsInternalException,
        KmsInvalidStateException, NotFoundException,
    };
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;

    fn service(err: DecryptError) -> Error {
        let raw = Response::new(StatusCode::try_from(400).unwrap(), SdkBody::empty());
        map_error("Decrypt", "alias/k", SdkError::service_error(err, raw))
    }

    #[test]
    fn service_errors_map_to_kinds() {
        let cases = [
            (
                DecryptError::InvalidCiphertextException(
                    InvalidCiphertextException::builder().build(),
                ),
                ErrorKind::DecryptionFailed,
                false,
            ),
            (
                DecryptError::IncorrectKeyException(IncorrectKeyException::builder().build()),
                ErrorKind::DecryptionFailed,
                false,
            ),
            (
                DecryptError::generic(
                    aws_sdk_kms::error::ErrorMetadata::builder()
                        .code("AccessDeniedException")
                        .message("no")
                        .build(),
                ),
                ErrorKind::AccessDenied,
                false,
            ),
            (
                DecryptError::DisabledException(
                    DisabledException::builder().message("disabled").build(),
                ),
                ErrorKind::KeyUnusable,
                false,
            ),
            (
                DecryptError::KmsInvalidStateException(KmsInvalidStateException::builder().build()),
                ErrorKind::KeyUnusable,
                false,
            ),
            (
                DecryptError::NotFoundException(NotFoundException::builder().build()),
                ErrorKind::KeyUnusable,
                false,
            ),
            (
                DecryptError::KmsInternalException(KmsInternalException::builder().build()),
                ErrorKind::Provider,
                true,
            ),
        ];
        for (err, kind, retryable) in cases {
            let e = service(err);
            assert_eq!((e.kind(), e.is_retryable()), (kind, retryable), "{e}");
            assert!(
                e.to_string().contains("alias/k") || kind == ErrorKind::DecryptionFailed,
                "{e}"
            );
        }
    }
}
