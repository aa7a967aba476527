//! Key management providers: wrap (Encrypt), unwrap (Decrypt) and re-wrap a data key.
//!
//! A provider is picked by the form of the key id (see [`ProviderKind::for_key_id`]):
//!
//! | key id | provider |
//! |---|---|
//! | `insecure-test-key`, `insecure-test-key/encrypt` | [`TestKey`] — no network, no secrecy |
//! | `local/<name>` | [`LocalKey`] — a 32-byte master key from the environment or a file |
//! | `vault/<name>` | Vault / OpenBao transit (feature `vault`) |
//! | `projects/…` | Google Cloud KMS (feature `gcp`) |
//! | anything else (ARN, UUID, `alias/…`) | AWS KMS (feature `aws`) |

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "gcp")]
pub mod gcp;
pub mod local;
pub mod test_key;
#[cfg(feature = "vault")]
pub mod vault;

use std::fmt;

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::context::EncryptionContext;
use crate::error::Result;

pub use local::LocalKey;
pub use test_key::TestKey;

/// The family of a provider; used for routing, audit events and call counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProviderKind {
    /// `insecure-test-key`.
    Test,
    /// `local/<name>`.
    Local,
    /// AWS KMS.
    Aws,
    /// Vault / OpenBao transit.
    Vault,
    /// Google Cloud KMS.
    Gcp,
}

impl ProviderKind {
    /// The provider a key id belongs to.
    ///
    /// ```
    /// use kms_fields::ProviderKind;
    /// assert_eq!(ProviderKind::for_key_id("insecure-test-key/encrypt"), ProviderKind::Test);
    /// assert_eq!(ProviderKind::for_key_id("vault/users"), ProviderKind::Vault);
    /// assert_eq!(ProviderKind::for_key_id("projects/p/locations/l/keyRings/r/cryptoKeys/k"), ProviderKind::Gcp);
    /// assert_eq!(ProviderKind::for_key_id("local/dev"), ProviderKind::Local);
    /// assert_eq!(ProviderKind::for_key_id("alias/users"), ProviderKind::Aws);
    /// ```
    pub fn for_key_id(key_id: &str) -> Self {
        if key_id == test_key::KEY_ID || key_id == test_key::ENCRYPT_ONLY_KEY_ID {
            ProviderKind::Test
        } else if key_id.starts_with("vault/") {
            ProviderKind::Vault
        } else if key_id.starts_with("projects/") {
            ProviderKind::Gcp
        } else if key_id.starts_with("local/") {
            ProviderKind::Local
        } else {
            ProviderKind::Aws
        }
    }

    /// Lower-case name, as in audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Test => "test",
            ProviderKind::Local => "local",
            ProviderKind::Aws => "aws",
            ProviderKind::Vault => "vault",
            ProviderKind::Gcp => "gcp",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A master key reference for one side of a re-wrap.
#[derive(Clone, Copy, Debug)]
pub struct KeyRef<'a> {
    /// The key id as configured.
    pub key_id: &'a str,
    /// The encryption context (`None`: no context at all).
    pub context: Option<&'a EncryptionContext>,
}

/// A key management service that wraps data keys.
///
/// Implementations must never log or put into errors a plaintext or a data key. Audit events
/// and call counts are added by [`Kms`](crate::Kms) around every call, so providers (and
/// wrappers such as fault injectors) stay small.
#[async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    /// The provider family.
    fn kind(&self) -> ProviderKind;

    /// Encrypt `plaintext` (a data key, or a small Box message) under `key_id`.
    async fn wrap(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: Option<&EncryptionContext>,
    ) -> Result<Vec<u8>>;

    /// Decrypt a provider ciphertext. A wrong context or key is
    /// [`DecryptionFailed`](crate::ErrorKind::DecryptionFailed).
    async fn unwrap(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: Option<&EncryptionContext>,
    ) -> Result<Zeroizing<Vec<u8>>>;

    /// Re-encrypt under another key or context of the same provider without the caller seeing
    /// the plaintext. The default unwraps and wraps; AWS (ReEncrypt) and Vault (rewrap)
    /// override it with a native call.
    async fn rewrap(&self, ciphertext: &[u8], from: KeyRef<'_>, to: KeyRef<'_>) -> Result<Vec<u8>> {
        let plaintext = self.unwrap(from.key_id, ciphertext, from.context).await?;
        self.wrap(to.key_id, &plaintext, to.context).await
    }

    /// Whether [`rewrap`](Self::rewrap) from `from` to `to` is a single native call (counted
    /// as one `ReEncrypt` rather than a Decrypt and an Encrypt). AWS: always; Vault: the same key
    /// and context (transit `rewrap` re-encrypts under the key's latest version).
    fn native_rewrap(&self, from: KeyRef<'_>, to: KeyRef<'_>) -> bool {
        let _ = (from, to);
        false
    }

    /// How many items one batch call may carry (1: no batch API; Vault: `batch_input`).
    fn max_batch(&self) -> usize {
        1
    }

    /// Unwrap many ciphertexts of one key in one call (only called when
    /// [`max_batch`](Self::max_batch) > 1). One result per item, in order.
    async fn unwrap_batch(
        &self,
        key_id: &str,
        items: &[(&[u8], Option<&EncryptionContext>)],
    ) -> Result<Vec<Result<Zeroizing<Vec<u8>>>>> {
        let mut out = Vec::with_capacity(items.len());
        for (ct, ctx) in items {
            out.push(self.unwrap(key_id, ct, *ctx).await);
        }
        Ok(out)
    }

    /// Wrap many plaintexts under one key in one call (see [`unwrap_batch`](Self::unwrap_batch)).
    async fn wrap_batch(
        &self,
        key_id: &str,
        items: &[(&[u8], Option<&EncryptionContext>)],
    ) -> Result<Vec<Result<Vec<u8>>>> {
        let mut out = Vec::with_capacity(items.len());
        for (pt, ctx) in items {
            out.push(self.wrap(key_id, pt, *ctx).await);
        }
        Ok(out)
    }
}
