//! AES-256-GCM backends. Both produce identical bytes; the tests check that they do.
//!
//! - [`Backend::RustCrypto`]: the pure-Rust `aes-gcm` crate (always compiled).
//! - [`Backend::AwsLc`]: `aws-lc-rs` (feature `aws-lc`), several times faster on large inputs;
//!   the default when the feature is on.

use crate::error::{Error, Result};

use super::{NONCE_LEN, TAG_LEN};

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

    /// Encrypt `buf[start..]` in place and append the tag.
    pub fn seal(
        self,
        key: &[u8; 32],
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
        start: usize,
    ) -> Result<()> {
        match self {
            Backend::RustCrypto => {
                use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit, Nonce};
                let cipher = Aes256Gcm::new(key.into());
                let tag = cipher
                    .encrypt_inout_detached(&Nonce::from(*nonce), aad, (&mut buf[start..]).into())
                    .map_err(|_| Error::config("plaintext too long for AES-GCM"))?;
                buf.extend_from_slice(tag.as_slice());
                Ok(())
            }
            #[cfg(feature = "aws-lc")]
            Backend::AwsLc => {
                use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
                let key = LessSafeKey::new(
                    UnboundKey::new(&AES_256_GCM, key).map_err(|_| Error::config("bad AES key"))?,
                );
                let tag = key
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

    /// Verify and decrypt `ciphertext ‖ tag` in place; on success `buf` holds the plaintext.
    pub fn open(
        self,
        key: &[u8; 32],
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let Some(ct_len) = buf.len().checked_sub(TAG_LEN) else {
            return Err(Error::decryption_failed());
        };
        match self {
            Backend::RustCrypto => {
                use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit, Nonce, Tag};
                let cipher = Aes256Gcm::new(key.into());
                let (body, tag) = buf.split_at_mut(ct_len);
                let tag = Tag::try_from(&*tag).map_err(|_| Error::decryption_failed())?;
                cipher
                    .decrypt_inout_detached(&Nonce::from(*nonce), aad, body.into(), &tag)
                    .map_err(|_| Error::decryption_failed())?;
            }
            #[cfg(feature = "aws-lc")]
            Backend::AwsLc => {
                use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
                let key = LessSafeKey::new(
                    UnboundKey::new(&AES_256_GCM, key).map_err(|_| Error::config("bad AES key"))?,
                );
                key.open_in_place(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
                    .map_err(|_| Error::decryption_failed())?;
            }
        }
        buf.truncate(ct_len);
        Ok(())
    }
}
