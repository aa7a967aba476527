//! AES-256-GCM backends. Both produce identical bytes; the tests check that they do.
//!
//! - [`Backend::RustCrypto`]: the pure-Rust `aes-gcm` crate (always compiled).
//! - [`Backend::AwsLc`]: `aws-lc-rs` (feature `aws-lc`), several times faster on large inputs;
//!   the default when the feature is on.

use std::sync::OnceLock;

use crate::data_key::DataKey;
use crate::error::{Error, Result};

use super::{NONCE_LEN, TAG_LEN};

/// The expanded AES-256-GCM key of a [`DataKey`], per backend, built on first use. RustCrypto's
/// is zeroized on drop (`aes-gcm`'s `zeroize` feature); aws-lc-rs cleanses its key context when
/// it is freed.
#[derive(Default)]
pub struct Schedules {
    rust_crypto: OnceLock<aes_gcm::Aes256Gcm>,
    #[cfg(feature = "aws-lc")]
    aws_lc: OnceLock<aws_lc_rs::aead::LessSafeKey>,
}

impl Schedules {
    /// Whether `backend`'s schedule has been built.
    #[cfg(test)]
    pub(crate) fn is_built(&self, backend: Backend) -> bool {
        match backend {
            Backend::RustCrypto => self.rust_crypto.get().is_some(),
            #[cfg(feature = "aws-lc")]
            Backend::AwsLc => self.aws_lc.get().is_some(),
        }
    }
}

impl std::fmt::Debug for Schedules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Schedules([REDACTED])")
    }
}

fn rust_crypto(key: &DataKey) -> &aes_gcm::Aes256Gcm {
    use aes_gcm::KeyInit;
    key.schedules()
        .rust_crypto
        .get_or_init(|| aes_gcm::Aes256Gcm::new(key.expose_secret().into()))
}

#[cfg(feature = "aws-lc")]
fn aws_lc(key: &DataKey) -> Result<&aws_lc_rs::aead::LessSafeKey> {
    use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
    if let Some(k) = key.schedules().aws_lc.get() {
        return Ok(k);
    }
    let k = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key.expose_secret())
            .map_err(|_| Error::config("bad AES key"))?,
    );
    Ok(key.schedules().aws_lc.get_or_init(|| k))
}

/// Which AES-256-GCM implementation to use (the default: `AwsLc` when compiled in, else
/// `RustCrypto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// RustCrypto `aes-gcm`.
    #[cfg_attr(not(feature = "aws-lc"), default)]
    RustCrypto,
    /// `aws-lc-rs` (feature `aws-lc`).
    #[cfg(feature = "aws-lc")]
    #[default]
    AwsLc,
}

impl Backend {
    /// Every backend compiled in.
    pub fn all() -> &'static [Backend] {
        &[
            Backend::RustCrypto,
            #[cfg(feature = "aws-lc")]
            Backend::AwsLc,
        ]
    }

    /// Encrypt `buf[start..]` in place and append the tag (the key schedule is built for this
    /// call; a [`DataKey`] keeps its own).
    pub fn seal(
        self,
        key: &[u8; 32],
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
        start: usize,
    ) -> Result<()> {
        self.seal_with_key(&DataKey::from_slice(key)?, nonce, aad, buf, start)
    }

    /// [`seal`](Self::seal) with a data key's cached key schedule.
    pub(crate) fn seal_with_key(
        self,
        key: &DataKey,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
        start: usize,
    ) -> Result<()> {
        match self {
            Backend::RustCrypto => {
                use aes_gcm::{AeadInOut, Nonce};
                let tag = rust_crypto(key)
                    .encrypt_inout_detached(&Nonce::from(*nonce), aad, (&mut buf[start..]).into())
                    .map_err(|_| Error::config("plaintext too long for AES-GCM"))?;
                buf.extend_from_slice(tag.as_slice());
                Ok(())
            }
            #[cfg(feature = "aws-lc")]
            Backend::AwsLc => {
                use aws_lc_rs::aead::{Aad, Nonce};
                let tag = aws_lc(key)?
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(*nonce),
                        Aad::from(aad),
                        &mut buf[start..],
                    )
                    .map_err(|_| Error::config("plaintext too long for AES-GCM"))?;
                buf.extend_from_slice(tag.as_ref());
                Ok(())
            }
        }
    }

    /// [`open`](Self::open) with a data key's cached key schedule.
    pub(crate) fn open_with_key(
        self,
        key: &DataKey,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let Some(ct_len) = buf.len().checked_sub(TAG_LEN) else {
            return Err(Error::decryption_failed());
        };
        match self {
            Backend::RustCrypto => {
                use aes_gcm::{AeadInOut, Nonce, Tag};
                let (body, tag) = buf.split_at_mut(ct_len);
                let tag = Tag::try_from(&*tag).map_err(|_| Error::decryption_failed())?;
                rust_crypto(key)
                    .decrypt_inout_detached(&Nonce::from(*nonce), aad, body.into(), &tag)
                    .map_err(|_| Error::decryption_failed())?;
            }
            #[cfg(feature = "aws-lc")]
            Backend::AwsLc => {
                use aws_lc_rs::aead::{Aad, Nonce};
                aws_lc(key)?
                    .open_in_place(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
                    .map_err(|_| Error::decryption_failed())?;
            }
        }
        buf.truncate(ct_len);
        Ok(())
    }

    /// Verify and decrypt `ciphertext ‖ tag` in place; on success `buf` holds the plaintext.
    pub fn open(
        self,
        key: &[u8; 32],
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.open_with_key(&DataKey::from_slice(key)?, nonce, aad, buf)
    }
}
