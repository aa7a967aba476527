//! A local master key (`local/<name>`): for development and on-premise use without a KMS.
//!
//! Master keys are 32 bytes, given in code or found in the environment on first use:
//! `KMS_FIELDS_LOCAL_KEY_<NAME>` holds 64 hex digits or base64 of 32 bytes, or
//! `KMS_FIELDS_LOCAL_KEY_<NAME>_FILE` names a file holding either (or the 32 raw bytes).
//! `<NAME>` is the key name upper-cased with `-` replaced by `_` (`local/billing-v2` →
//! `KMS_FIELDS_LOCAL_KEY_BILLING_V2`). So that two key names never share a variable, names
//! looked up in the environment must be lowercase ASCII letters, digits and `-` (`billing_v2`
//! or `Billing-V2` are refused with a `Config` error; keys given in code with
//! [`LocalKey::with_key`] may have any name). `kms-fields keygen` prints a key.
//!
//! **Wrap limit.** Every wrap draws a random 96-bit AES-GCM nonce under the one master key; the
//! usual bound for random nonces (NIST SP 800-38D) is 2³² wraps per key. A data key is wrapped
//! once per record insert and per rotation, so rotate the master key (a new key version with a
//! new `local/<name>`, then `rotate_table`) well before four billion wraps — or use a KMS.
//!
//! Wrapped format (frozen): `0x01 ‖ nonce (12) ‖ AES-256-GCM ciphertext ‖ tag (16)`, with the
//! context's canonical JSON bytes as associated data (none when there is no context).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::{Provider, ProviderKind};
use crate::cipher::{self, AttributeOptions};
use crate::context::EncryptionContext;
use crate::data_key::DataKey;
use crate::encoding;
use crate::error::{Error, ErrorKind, Result};

const FORMAT_VERSION: u8 = 1;

/// The local master-key provider.
#[derive(Clone, Default)]
pub struct LocalKey {
    keys: Arc<RwLock<HashMap<String, DataKey>>>,
    from_env: bool,
}

impl LocalKey {
    /// A provider that knows only the keys added with [`with_key`](Self::with_key).
    pub fn new() -> Self {
        Self::default()
    }

    /// A provider that also looks keys up in the environment on first use.
    pub fn from_env() -> Self {
        Self {
            from_env: true,
            ..Self::default()
        }
    }

    /// Add a master key under `name` (the part after `local/`).
    pub fn with_key(self, name: &str, key: &[u8]) -> Result<Self> {
        let key = DataKey::from_slice(key).map_err(|_| {
            Error::config(format!("local key {name}: a master key must be 32 bytes"))
        })?;
        self.keys
            .write()
            .map_err(|_| poisoned())?
            .insert(name.to_owned(), key);
        Ok(self)
    }

    /// The environment variable consulted for `name`.
    pub fn env_var(name: &str) -> String {
        let upper: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("KMS_FIELDS_LOCAL_KEY_{upper}")
    }

    /// Check every `KMS_FIELDS_LOCAL_KEY_*` variable that is set (used by
    /// [`Kms::from_env`](crate::Kms::from_env)): a value must be a key (64 hex digits or base64
    /// of 32 bytes), a `_FILE` must name a readable file holding one. The error names the
    /// variable.
    pub fn check_env() -> Result<()> {
        for (var, value) in std::env::vars_os() {
            let Some(var) = var.to_str() else { continue };
            if !var.starts_with("KMS_FIELDS_LOCAL_KEY_") {
                continue;
            }
            let value = Zeroizing::new(
                value
                    .to_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Error::config(format!("{var} is not UTF-8")))?,
            );
            let checked = match var.strip_suffix("_FILE") {
                Some(_) => Self::read_key_file(&value).map(drop),
                None => Self::parse_key_text(&value).map(drop),
            };
            checked.map_err(|e| Error::config(format!("{var}: {}", e.message())))?;
        }
        Ok(())
    }

    fn read_key_file(path: &str) -> Result<DataKey> {
        let raw = Zeroizing::new(
            std::fs::read(path).map_err(|e| Error::config(format!("cannot read {path}: {e}")))?,
        );
        if raw.len() == 32 {
            return DataKey::from_slice(&raw);
        }
        let text = std::str::from_utf8(&raw)
            .map_err(|_| Error::config(format!("{path} is neither text nor 32 bytes")))?;
        Self::parse_key_text(text)
    }

    /// Whether `name` may be looked up in the environment: lowercase ASCII letters, digits and
    /// `-`, so that [`env_var`](Self::env_var) maps no two such names to one variable.
    pub fn is_env_name(name: &str) -> bool {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }

    /// Parse a master key from text: 64 hex digits or base64 of 32 bytes.
    pub fn parse_key_text(text: &str) -> Result<DataKey> {
        let t = text.trim();
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            let bytes: Vec<u8> = (0..32)
                .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16))
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| Error::config("local master key: invalid hex"))?;
            return DataKey::from_slice(&bytes);
        }
        let bytes = Zeroizing::new(
            encoding::lenient_decode(t)
                .map_err(|_| Error::config("local master key: neither hex nor base64"))?,
        );
        DataKey::from_slice(&bytes)
            .map_err(|_| Error::config("local master key: must decode to 32 bytes"))
    }

    fn key(&self, key_id: &str) -> Result<DataKey> {
        let name = key_id
            .strip_prefix("local/")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::config(format!("not a local key id: {key_id}")))?;
        if let Some(k) = self.keys.read().map_err(|_| poisoned())?.get(name) {
            return Ok(k.clone());
        }
        if !self.from_env {
            return Err(Error::config(format!("local key {name} is not configured")));
        }
        if !Self::is_env_name(name) {
            return Err(Error::config(format!(
                "local key {name:?}: names looked up in the environment are lowercase letters, digits and '-' (e.g. billing-v2 → KMS_FIELDS_LOCAL_KEY_BILLING_V2), so that two names never share one variable: rename the key, or give it in code with LocalKey::with_key"
            )));
        }
        let var = Self::env_var(name);
        let key = if let Ok(text) = std::env::var(&var) {
            Self::parse_key_text(&text)?
        } else if let Ok(path) = std::env::var(format!("{var}_FILE")) {
            Self::read_key_file(&path)
                .map_err(|e| Error::config(format!("local key {name}: {}", e.message())))?
        } else {
            return Err(Error::new(
                ErrorKind::MissingKeyId,
                format!("local key {name}: set {var} (hex or base64) or {var}_FILE"),
            ));
        };
        self.keys
            .write()
            .map_err(|_| poisoned())?
            .insert(name.to_owned(), key.clone());
        Ok(key)
    }
}

fn poisoned() -> Error {
    Error::config("local key store lock poisoned")
}

fn aad(context: Option<&EncryptionContext>) -> Vec<u8> {
    context
        .map(EncryptionContext::json_bytes)
        .unwrap_or_default()
}

#[async_trait]
impl Provider for LocalKey {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Local
    }

    async fn wrap(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: Option<&EncryptionContext>,
    ) -> Result<Vec<u8>> {
        let key = self.key(key_id)?;
        let aad = aad(context);
        let sealed = cipher::encrypt(
            &key,
            plaintext,
            AttributeOptions {
                associated_data: &aad,
                padding: None,
            },
        )?;
        let mut out = Vec::with_capacity(1 + sealed.len());
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    async fn unwrap(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: Option<&EncryptionContext>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let key = self.key(key_id)?;
        let Some((&FORMAT_VERSION, sealed)) = ciphertext.split_first() else {
            return Err(Error::decryption_failed());
        };
        let aad = aad(context);
        cipher::decrypt(
            &key,
            sealed,
            AttributeOptions {
                associated_data: &aad,
                padding: None,
            },
        )
    }
}

impl fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .keys
            .read()
            .map(|k| k.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("LocalKey")
            .field("keys", &names)
            .field("from_env", &self.from_env)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_context_binding() {
        let p = LocalKey::new().with_key("dev", &[1u8; 32]).unwrap();
        let ctx = EncryptionContext::for_model("User", 7);
        let ct = p.wrap("local/dev", b"secret", Some(&ctx)).await.unwrap();
        assert_eq!(ct[0], 1);
        assert_eq!(ct.len(), 1 + 12 + 6 + 16);
        assert_eq!(
            &p.unwrap("local/dev", &ct, Some(&ctx)).await.unwrap()[..],
            b"secret"
        );
        let wrong = EncryptionContext::for_model("User", 8);
        assert_eq!(
            p.unwrap("local/dev", &ct, Some(&wrong))
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::DecryptionFailed
        );
        assert!(p.unwrap("local/dev", &ct, None).await.is_err());
        assert!(p.unwrap("local/other", &ct, Some(&ctx)).await.is_err());
        assert!(!format!("{p:?}").contains("1, 1"));
    }

    #[test]
    fn key_text_forms() {
        let hex = "00".repeat(32);
        assert_eq!(
            LocalKey::parse_key_text(&hex).unwrap().expose_secret(),
            &[0u8; 32]
        );
        let b64 = encoding::strict_encode(&[9u8; 32]);
        assert_eq!(
            LocalKey::parse_key_text(&b64).unwrap().expose_secret(),
            &[9u8; 32]
        );
        assert!(LocalKey::parse_key_text("abc").is_err());
        assert_eq!(
            LocalKey::env_var("billing-v2"),
            "KMS_FIELDS_LOCAL_KEY_BILLING_V2"
        );
    }

    /// Issue 19.7: names that would share an environment variable with another name are
    /// refused instead of silently using that other key's variable.
    #[tokio::test]
    async fn ambiguous_names_are_refused() {
        let p = LocalKey::from_env();
        for name in [
            "billing_v2",
            "Billing-V2",
            "BILLING-V2",
            "billing.v2",
            "billing v2",
        ] {
            let e = p
                .wrap(&format!("local/{name}"), &[1; 32], None)
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{name}: {e}");
            assert!(e.to_string().contains("never share"), "{name}: {e}");
        }
        // the canonical name is looked up (and missing here)
        let e = p
            .wrap("local/billing-v2-unset", &[1; 32], None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingKeyId, "{e}");
        // a key given in code may have any name
        let p = LocalKey::new().with_key("Billing_V2", &[7; 32]).unwrap();
        assert!(p.wrap("local/Billing_V2", &[1; 32], None).await.is_ok());
    }
}
