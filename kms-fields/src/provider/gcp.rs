//! Google Cloud KMS (feature `gcp`), through the official `google-cloud-kms-v1` client.
//!
//! - Key id `projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>`; credentials by the
//!   client's standard mechanisms (Application Default Credentials), or a client you build
//!   (endpoint override, other credentials).
//! - wrap = `Encrypt`, unwrap = `Decrypt`, with `additional_authenticated_data` = the context's
//!   canonical JSON bytes. Re-wrap is decrypt + encrypt (Cloud KMS has no re-encrypt).
//! - Integrity: CRC32C of the plaintext and of the AAD are sent with every encrypt, the AAD's
//!   and the ciphertext's with every decrypt; the service's `verified_*` flags and the returned
//!   `ciphertext_crc32c` / `plaintext_crc32c` are checked, and a mismatch is a retryable
//!   `Provider` error (data corrupted in transit), never a wrong plaintext.
//!
//! Errors: `INVALID_ARGUMENT` on decrypt (wrong AAD, another key's ciphertext, a malformed one)
//! → `DecryptionFailed`; `PERMISSION_DENIED` / `UNAUTHENTICATED` → `AccessDenied`;
//! `NOT_FOUND`, `FAILED_PRECONDITION` (disabled or destroyed version) → `KeyUnusable`;
//! `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `INTERNAL`, timeouts and connection
//! failures → retryable `Provider`.

use std::fmt;

use async_trait::async_trait;
use google_cloud_gax::error::rpc::Code;
use google_cloud_kms_v1::client::KeyManagementService;
use zeroize::Zeroizing;

use super::{Provider, ProviderKind};
use crate::context::EncryptionContext;
use crate::error::{Error, ErrorKind, Result};

/// The Google Cloud KMS provider.
pub struct GcpProvider {
    client: tokio::sync::OnceCell<KeyManagementService>,
}

impl GcpProvider {
    /// Use this client.
    pub fn new(client: KeyManagementService) -> Self {
        Self {
            client: tokio::sync::OnceCell::from(client),
        }
    }

    /// A client with Application Default Credentials and the default endpoint, now.
    pub async fn from_env() -> Result<Self> {
        Ok(Self::new(default_client().await?))
    }

    /// The same, created on first use.
    pub fn lazy_from_env() -> Self {
        Self {
            client: tokio::sync::OnceCell::new(),
        }
    }

    async fn client(&self) -> Result<&KeyManagementService> {
        self.client.get_or_try_init(default_client).await
    }

    /// A client for `endpoint` without credentials (emulators, tests).
    pub async fn anonymous(endpoint: &str) -> Result<Self> {
        let client = KeyManagementService::builder()
            .with_endpoint(endpoint)
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
            .build()
            .await
            .map_err(|e| Error::config(format!("Google Cloud KMS client: {e}")))?;
        Ok(Self::new(client))
    }
}

async fn default_client() -> Result<KeyManagementService> {
    KeyManagementService::builder().build().await.map_err(|e| {
        Error::config(format!(
            "Google Cloud KMS client (Application Default Credentials): {e}"
        ))
    })
}

/// CRC32C as the API carries it (an int64 holding the u32).
pub fn crc32c(data: &[u8]) -> i64 {
    i64::from(crc32c::crc32c(data))
}

fn aad(context: Option<&EncryptionContext>) -> Vec<u8> {
    context.map(EncryptionContext::gcp_aad).unwrap_or_default()
}

fn integrity(op: &str, key_id: &str, what: &str) -> Error {
    Error::new(ErrorKind::Provider, format!("Google Cloud KMS {op} with {key_id}: {what} failed its CRC32C check (corrupted in transit)")).retryable(true)
}

/// Check an encrypt response's integrity fields.
pub fn check_encrypt(
    key_id: &str,
    aad_sent: bool,
    verified_plaintext: bool,
    verified_aad: bool,
    ciphertext: &[u8],
    ciphertext_crc: Option<i64>,
) -> Result<()> {
    if !verified_plaintext {
        return Err(integrity("encrypt", key_id, "the plaintext"));
    }
    if aad_sent && !verified_aad {
        return Err(integrity(
            "encrypt",
            key_id,
            "the additional authenticated data",
        ));
    }
    if ciphertext_crc != Some(crc32c(ciphertext)) {
        return Err(integrity("encrypt", key_id, "the ciphertext"));
    }
    Ok(())
}

/// Check a decrypt response's integrity field.
pub fn check_decrypt(key_id: &str, plaintext: &[u8], plaintext_crc: Option<i64>) -> Result<()> {
    if plaintext_crc != Some(crc32c(plaintext)) {
        return Err(integrity("decrypt", key_id, "the plaintext"));
    }
    Ok(())
}

fn map_error(op: &str, key_id: &str, e: google_cloud_gax::error::Error) -> Error {
    let code = e.status().map(|s| s.code);
    let message = e.status().map(|s| s.message.clone()).unwrap_or_default();
    let (kind, retryable, text) = match code {
        Some(Code::InvalidArgument) if op == "decrypt" => (
            ErrorKind::DecryptionFailed,
            false,
            "Decryption failed".to_owned(),
        ),
        Some(Code::PermissionDenied | Code::Unauthenticated) => (
            ErrorKind::AccessDenied,
            false,
            format!("Google Cloud KMS {op} with {key_id}: permission denied"),
        ),
        Some(Code::NotFound | Code::FailedPrecondition) => (
            ErrorKind::KeyUnusable,
            false,
            format!("Google Cloud KMS {op} with {key_id}: {message}"),
        ),
        Some(
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Internal
            | Code::Aborted,
        ) => (
            ErrorKind::Provider,
            true,
            format!("Google Cloud KMS {op} with {key_id} failed: {message}"),
        ),
        _ if e.is_timeout() || e.is_io() || e.is_connect() => (
            ErrorKind::Provider,
            true,
            format!("Google Cloud KMS {op} with {key_id}: cannot reach the service"),
        ),
        _ => (
            ErrorKind::Provider,
            false,
            format!("Google Cloud KMS {op} with {key_id} failed: {e}"),
        ),
    };
    Error::new(kind, text).retryable(retryable)
}

#[async_trait]
impl Provider for GcpProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Gcp
    }

    async fn wrap(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: Option<&EncryptionContext>,
    ) -> Result<Vec<u8>> {
        let aad = aad(context);
        let out = self
            .client()
            .await?
            .encrypt()
            .set_name(key_id)
            .set_plaintext(bytes::Bytes::copy_from_slice(plaintext))
            .set_plaintext_crc32c(crc32c(plaintext))
            .set_additional_authenticated_data(bytes::Bytes::from(aad.clone()))
            .set_additional_authenticated_data_crc32c(crc32c(&aad))
            .send()
            .await
            .map_err(|e| map_error("encrypt", key_id, e))?;
        check_encrypt(
            key_id,
            !aad.is_empty(),
            out.verified_plaintext_crc32c,
            out.verified_additional_authenticated_data_crc32c,
            &out.ciphertext,
            out.ciphertext_crc32c,
        )?;
        Ok(out.ciphertext.to_vec())
    }

    async fn unwrap(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: Option<&EncryptionContext>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let aad = aad(context);
        let out = self
            .client()
            .await?
            .decrypt()
            .set_name(key_id)
            .set_ciphertext(bytes::Bytes::copy_from_slice(ciphertext))
            .set_ciphertext_crc32c(crc32c(ciphertext))
            .set_additional_authenticated_data(bytes::Bytes::from(aad.clone()))
            .set_additional_authenticated_data_crc32c(crc32c(&aad))
            .send()
            .await
            .map_err(|e| map_error("decrypt", key_id, e))?;
        let plaintext = Zeroizing::new(out.plaintext.to_vec());
        check_decrypt(key_id, &plaintext, out.plaintext_crc32c)?;
        Ok(plaintext)
    }
}

impl fmt::Debug for GcpProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpProvider").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_answer_and_checks() {
        // RFC 3720 B.4 test vector: 32 bytes of zeros
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert!(check_encrypt("k", true, true, true, b"ct", Some(crc32c(b"ct"))).is_ok());
        for bad in [
            check_encrypt("k", true, false, true, b"ct", Some(crc32c(b"ct"))),
            check_encrypt("k", true, true, false, b"ct", Some(crc32c(b"ct"))),
            check_encrypt("k", false, true, false, b"ct", Some(crc32c(b"cx"))),
            check_encrypt("k", false, true, false, b"ct", None),
            check_decrypt("k", b"pt", Some(crc32c(b"px"))),
        ] {
            let e = bad.unwrap_err();
            assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::Provider, true));
        }
        assert!(check_encrypt("k", false, true, false, b"ct", Some(crc32c(b"ct"))).is_ok());
    }

    /// A service error as the client returns it for a status the server sent.
    fn status(code: Code, message: &str) -> google_cloud_gax::error::Error {
        google_cloud_gax::error::Error::service(
            google_cloud_gax::error::rpc::Status::default()
                .set_code(code)
                .set_message(message),
        )
    }

    fn mapped(op: &str, e: google_cloud_gax::error::Error) -> (ErrorKind, bool, String) {
        let e = map_error(op, "projects/p/locations/l/keyRings/r/cryptoKeys/k", e);
        (e.kind(), e.is_retryable(), e.to_string())
    }

    #[test]
    fn status_codes_map_to_error_kinds() {
        for op in ["encrypt", "decrypt"] {
            for code in [Code::PermissionDenied, Code::Unauthenticated] {
                let (kind, retry, text) = mapped(
                    op,
                    status(
                        code,
                        "Permission 'cloudkms.cryptoKeyVersions.useToDecrypt' denied",
                    ),
                );
                assert_eq!(
                    (kind, retry),
                    (ErrorKind::AccessDenied, false),
                    "{op} {code:?}"
                );
                assert!(
                    text.contains("permission denied") && text.contains(op),
                    "{text}"
                );
            }
            for code in [Code::NotFound, Code::FailedPrecondition] {
                let (kind, retry, text) =
                    mapped(op, status(code, "CryptoKeyVersion 1 is DESTROYED"));
                assert_eq!(
                    (kind, retry),
                    (ErrorKind::KeyUnusable, false),
                    "{op} {code:?}"
                );
                assert!(text.ends_with("CryptoKeyVersion 1 is DESTROYED"), "{text}");
            }
            for code in [
                Code::Unavailable,
                Code::DeadlineExceeded,
                Code::ResourceExhausted,
                Code::Internal,
                Code::Aborted,
            ] {
                let (kind, retry, _) = mapped(op, status(code, "try again"));
                assert_eq!((kind, retry), (ErrorKind::Provider, true), "{op} {code:?}");
            }
            // a client-side timeout (no status at all) is retryable too
            let (kind, retry, text) =
                mapped(op, google_cloud_gax::error::Error::timeout("deadline"));
            assert_eq!((kind, retry), (ErrorKind::Provider, true));
            assert!(text.contains("cannot reach the service"), "{text}");
            // anything else is a provider error that retrying will not fix
            let (kind, retry, _) = mapped(op, status(Code::Unimplemented, "no"));
            assert_eq!((kind, retry), (ErrorKind::Provider, false));
        }
        // INVALID_ARGUMENT is a failed decryption (wrong AAD, another key's ciphertext) on
        // decrypt, with the fixed message; on encrypt it is a request error
        let (kind, retry, text) = mapped(
            "decrypt",
            status(
                Code::InvalidArgument,
                "Decryption failed: verify that 'name' refers to the correct CryptoKey.",
            ),
        );
        assert_eq!(
            (kind, retry, text.as_str()),
            (ErrorKind::DecryptionFailed, false, "Decryption failed")
        );
        let (kind, retry, _) = mapped(
            "encrypt",
            status(Code::InvalidArgument, "plaintext too long"),
        );
        assert_eq!((kind, retry), (ErrorKind::Provider, false));
    }
}
