//! [`KmsBox`]: kms_encrypted's `KmsEncrypted::Box`, plus sealed envelopes for serde values.
//!
//! - [`encrypt`](KmsBox::encrypt) / [`decrypt`](KmsBox::decrypt): a message (≤ 4 KiB on AWS)
//!   encrypted directly by the KMS; output `vN:<strict base64>`, byte-compatible with the gem.
//! - [`seal`](KmsBox::seal) / [`open`](KmsBox::open): any serde value of any size, through an
//!   envelope — a fresh data key wrapped by the KMS, the value (MessagePack) encrypted under it.
//!   For payloads that leave the database: background-job arguments, cache entries, messages.
//!
//! Sealed format (frozen): `$kmsf$1$<stored key>$<strict base64(nonce ‖ ciphertext ‖ tag)>`,
//! where `<stored key>` is the `vN:…` text of the wrapped data key and the AES-256-GCM
//! associated data is the bytes of `<stored key>` (so key and payload cannot be recombined).
//! Sealing a value that is already a sealed string returns it unchanged, so a retried job does
//! not seal its arguments twice.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::blocking;
use crate::cipher::{self, AttributeOptions};
use crate::codec::{Codec, MessagePack};
use crate::context::EncryptionContext;
use crate::data_key::DataKey;
use crate::encoding;
use crate::error::{Error, Result};
use crate::keyring::KeySpec;
use crate::kms::Kms;

const SEALED_PREFIX: &str = "$kmsf$1$";

/// A key spec bound to a [`Kms`], for encrypting values outside of models.
///
/// ```
/// use kms_fields::{Kms, KeySpec, KmsBox, EncryptionContext};
/// let boxed = KmsBox::new(Kms::new(), KeySpec::new().key_id("insecure-test-key"));
/// let ctx = EncryptionContext::from([("purpose", "export")]);
/// let ct = boxed.encrypt_blocking(b"hello", Some(&ctx))?;
/// assert!(ct.starts_with("v1:"));
/// assert_eq!(&boxed.decrypt_blocking(&ct, Some(&ctx))?[..], b"hello");
///
/// let sealed = boxed.seal_blocking(&vec![1u32, 2, 3], Some(&ctx))?;
/// assert_eq!(boxed.seal_blocking(&sealed, Some(&ctx))?, sealed); // already sealed: unchanged
/// let v: Vec<u32> = boxed.open_blocking(&sealed, Some(&ctx))?;
/// assert_eq!(v, [1, 2, 3]);
/// # Ok::<(), kms_fields::Error>(())
/// ```
#[derive(Clone)]
pub struct KmsBox {
    kms: Kms,
    spec: KeySpec,
}

impl KmsBox {
    /// A box over `spec` (key id, version, previous versions).
    pub fn new(kms: Kms, spec: KeySpec) -> Self {
        Self { kms, spec }
    }

    /// The key spec.
    pub fn spec(&self) -> &KeySpec {
        &self.spec
    }

    /// Encrypt a message directly with the KMS.
    pub async fn encrypt(
        &self,
        message: &[u8],
        context: Option<&EncryptionContext>,
    ) -> Result<String> {
        let ctx = context.cloned();
        self.kms
            .encrypt(&self.spec, None, message, &move |_| Ok(ctx.clone()))
            .await
    }

    /// Decrypt a `vN:` (or legacy) value; its version picks the key id.
    pub async fn decrypt(
        &self,
        ciphertext: &str,
        context: Option<&EncryptionContext>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let ctx = context.cloned();
        self.kms
            .decrypt(&self.spec, None, ciphertext, &move |_| Ok(ctx.clone()))
            .await
    }

    /// [`encrypt`](Self::encrypt) from synchronous code.
    pub fn encrypt_blocking(
        &self,
        message: &[u8],
        context: Option<&EncryptionContext>,
    ) -> Result<String> {
        blocking::run(self.encrypt(message, context))
    }

    /// [`decrypt`](Self::decrypt) from synchronous code.
    pub fn decrypt_blocking(
        &self,
        ciphertext: &str,
        context: Option<&EncryptionContext>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        blocking::run(self.decrypt(ciphertext, context))
    }

    /// Whether `text` is a sealed envelope (by its prefix).
    pub fn is_sealed(text: &str) -> bool {
        text.starts_with(SEALED_PREFIX)
    }

    /// Seal any serde value: one KMS `Encrypt` for a fresh data key. A value that serialises
    /// to an already sealed string is returned unchanged (no KMS call).
    pub async fn seal<T: Serialize + ?Sized>(
        &self,
        value: &T,
        context: Option<&EncryptionContext>,
    ) -> Result<String> {
        let plaintext = Zeroizing::new(rmp_serde::to_vec_named(value).map_err(|e| {
            Error::codec(format!(
                "cannot serialise the value: {}",
                crate::codec::redact_serde(&e.to_string())
            ))
        })?);
        if let Ok(text) = rmp_serde::from_slice::<String>(&plaintext)
            && Self::is_sealed(&text)
            && split_sealed(&text).is_ok()
        {
            return Ok(text);
        }
        let key = DataKey::generate()?;
        let stored = self.encrypt(key.expose_secret(), context).await?;
        let body = cipher::encrypt(
            &key,
            &plaintext,
            AttributeOptions {
                associated_data: stored.as_bytes(),
                padding: None,
            },
        )?;
        Ok(format!(
            "{SEALED_PREFIX}{stored}${}",
            encoding::strict_encode(&body)
        ))
    }

    /// Open a sealed value: one KMS `Decrypt`.
    pub async fn open<T: Serialize + DeserializeOwned>(
        &self,
        sealed: &str,
        context: Option<&EncryptionContext>,
    ) -> Result<T> {
        let (stored, body) = split_sealed(sealed)?;
        let key = DataKey::from_slice(&self.decrypt(stored, context).await?)?;
        let plaintext = cipher::decrypt(
            &key,
            &body,
            AttributeOptions {
                associated_data: stored.as_bytes(),
                padding: None,
            },
        )?;
        MessagePack::<T>::decode(&plaintext)
    }

    /// [`seal`](Self::seal) from synchronous code.
    pub fn seal_blocking<T: Serialize + ?Sized>(
        &self,
        value: &T,
        context: Option<&EncryptionContext>,
    ) -> Result<String> {
        blocking::run(self.seal(value, context))
    }

    /// [`open`](Self::open) from synchronous code.
    pub fn open_blocking<T: Serialize + DeserializeOwned>(
        &self,
        sealed: &str,
        context: Option<&EncryptionContext>,
    ) -> Result<T> {
        blocking::run(self.open(sealed, context))
    }
}

fn split_sealed(sealed: &str) -> Result<(&str, Vec<u8>)> {
    let rest = sealed
        .strip_prefix(SEALED_PREFIX)
        .ok_or_else(|| Error::bad_format("not a sealed value (missing $kmsf$1$ prefix)"))?;
    let (stored, body) = rest
        .rsplit_once('$')
        .ok_or_else(|| Error::bad_format("sealed value: missing payload"))?;
    if !stored.starts_with('v') {
        return Err(Error::bad_format("sealed value: malformed key"));
    }
    let body = encoding::strict_decode(body)
        .map_err(|_| Error::bad_format("sealed value: invalid base64 payload"))?;
    Ok((stored, body))
}

impl fmt::Debug for KmsBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsBox")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}
