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
//!
//! [`seal`](KmsBox::seal) always seals — it never passes through a string because it *looks*
//! sealed: a sealed value captured elsewhere and submitted as ordinary input would otherwise be
//! opened later as if it were the job's own. Values that are sealed already travel as
//! [`Sealed`]; a string that must be one (a retried job's argument) is checked with
//! [`ensure_sealed`](KmsBox::ensure_sealed), which opens its key under this box's key spec and
//! the given context and verifies the payload.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
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

/// A value sealed by [`KmsBox::seal`] (`$kmsf$1$…` text): what travels in job arguments,
/// cache entries and messages. Serialises as its text; deserialising checks the form only —
/// [`KmsBox::open`] verifies key, context and payload, and [`KmsBox::ensure_sealed`] verifies
/// them without returning the plaintext.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Sealed(String);

impl Sealed {
    /// A string in sealed form (prefix, stored key, base64 payload) — nothing verified; see
    /// [`KmsBox::ensure_sealed`] for that.
    pub fn parse(text: impl Into<String>) -> Result<Self> {
        let text = text.into();
        split_sealed(&text)?;
        Ok(Self(text))
    }

    /// The sealed text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The sealed text.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl AsRef<str> for Sealed {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Sealed {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

impl From<Sealed> for String {
    fn from(s: Sealed) -> String {
        s.0
    }
}

impl<'de> Deserialize<'de> for Sealed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Sealed::parse(text).map_err(|e| serde::de::Error::custom(e.message()))
    }
}

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
/// let v: Vec<u32> = boxed.open_blocking(&sealed, Some(&ctx))?;
/// assert_eq!(v, [1, 2, 3]);
/// // a string that should be sealed (e.g. a retried job's argument) is verified, not trusted
/// let text: String = sealed.to_string();
/// assert_eq!(boxed.ensure_sealed_blocking(&text, Some(&ctx))?, sealed);
/// let other = EncryptionContext::from([("purpose", "other")]);
/// assert!(boxed.ensure_sealed_blocking(&text, Some(&other)).is_err());
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

    /// Seal any serde value: one KMS `Encrypt` for a fresh data key. Always seals — a string
    /// that looks sealed is sealed like any other (see the [module documentation](self)).
    pub async fn seal<T: Serialize + ?Sized>(
        &self,
        value: &T,
        context: Option<&EncryptionContext>,
    ) -> Result<Sealed> {
        let plaintext = Zeroizing::new(rmp_serde::to_vec_named(value).map_err(|e| {
            Error::codec(format!(
                "cannot serialise the value: {}",
                crate::codec::redact_serde(&e.to_string())
            ))
        })?);
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
        Ok(Sealed(format!(
            "{SEALED_PREFIX}{stored}${}",
            encoding::strict_encode(&body)
        )))
    }

    /// Open a sealed value (a `&Sealed` derefs to its text): one KMS `Decrypt`.
    pub async fn open<T: Serialize + DeserializeOwned>(
        &self,
        sealed: &str,
        context: Option<&EncryptionContext>,
    ) -> Result<T> {
        let plaintext = self.open_bytes(sealed, context).await?;
        MessagePack::<T>::decode(&plaintext)
    }

    /// Verify that `text` is a value this box sealed under `context` — its key opens with this
    /// box's key spec (current or previous versions) and `context`, and its payload
    /// authenticates — and return it as [`Sealed`]. One KMS `Decrypt`; the plaintext is
    /// dropped (zeroized). For a job argument that should already be sealed: what
    /// [`seal`](Self::seal) must not guess.
    pub async fn ensure_sealed(
        &self,
        text: &str,
        context: Option<&EncryptionContext>,
    ) -> Result<Sealed> {
        self.open_bytes(text, context).await?;
        Ok(Sealed(text.to_owned()))
    }

    /// [`ensure_sealed`](Self::ensure_sealed) from synchronous code.
    pub fn ensure_sealed_blocking(
        &self,
        text: &str,
        context: Option<&EncryptionContext>,
    ) -> Result<Sealed> {
        blocking::run(self.ensure_sealed(text, context))
    }

    async fn open_bytes(
        &self,
        sealed: &str,
        context: Option<&EncryptionContext>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let (stored, body) = split_sealed(sealed)?;
        let key = DataKey::from_slice(&self.decrypt(stored, context).await?)?;
        cipher::decrypt(
            &key,
            &body,
            AttributeOptions {
                associated_data: stored.as_bytes(),
                padding: None,
            },
        )
    }

    /// [`seal`](Self::seal) from synchronous code.
    pub fn seal_blocking<T: Serialize + ?Sized>(
        &self,
        value: &T,
        context: Option<&EncryptionContext>,
    ) -> Result<Sealed> {
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
