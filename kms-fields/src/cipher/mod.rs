//! The attribute cipher — frozen format (docs/FORMATS.md §5 Attribute ciphertext, Lockbox layout).
//!
//! AES-256-GCM under the record's data key: `nonce (12 random bytes) ‖ ciphertext ‖ tag (16)`.
//! Text columns hold it as strict base64, binary columns as raw bytes. Optional padding
//! (ISO/IEC 7816-4, Lockbox `padding`) is applied to the plaintext before encryption.
//!
//! Associated data: native mode binds the attribute's logical name, so a ciphertext moved to
//! another column of the same record fails to decrypt; Lockbox compatibility mode uses none.

mod backend;
pub mod padding;

pub use backend::Backend;

use zeroize::Zeroizing;

use crate::data_key::DataKey;
use crate::encoding;
use crate::error::{Error, Result};

/// Nonce length in bytes.
pub const NONCE_LEN: usize = 12;
/// Authentication tag length in bytes.
pub const TAG_LEN: usize = 16;

/// How one attribute is sealed: associated data and padding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttributeOptions<'a> {
    /// Associated data bound to the ciphertext (empty in Lockbox mode).
    pub associated_data: &'a [u8],
    /// Pad the plaintext to a multiple of this many bytes (ISO/IEC 7816-4); `None`: no padding.
    pub padding: Option<usize>,
}

impl<'a> AttributeOptions<'a> {
    /// Native mode: the attribute's logical name as associated data, no padding.
    pub fn native(attribute: &'a str) -> Self {
        Self {
            associated_data: attribute.as_bytes(),
            padding: None,
        }
    }

    /// Lockbox mode: no associated data, no padding.
    pub fn lockbox() -> Self {
        Self::default()
    }

    /// Set the padding block size (`Some(16)` is Lockbox's `padding: true`).
    pub fn padding(mut self, block: Option<usize>) -> Self {
        self.padding = block;
        self
    }
}

/// Encrypt `plaintext` with a fresh random nonce.
pub fn encrypt(key: &DataKey, plaintext: &[u8], opts: AttributeOptions<'_>) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce)
        .map_err(|e| Error::config(format!("the OS random number generator failed: {e}")))?;
    encrypt_with_nonce(Backend::default(), key, &nonce, plaintext, opts)
}

/// Encrypt with a caller-chosen nonce and backend. Only for known-answer tests: a nonce must
/// never repeat under one key.
#[doc(hidden)]
pub fn encrypt_with_nonce(
    backend: Backend,
    key: &DataKey,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    opts: AttributeOptions<'_>,
) -> Result<Vec<u8>> {
    let body_len = match opts.padding {
        Some(block) => padding::padded_len(plaintext.len(), block)?,
        None => plaintext.len(),
    };
    let mut out = Vec::with_capacity(NONCE_LEN + body_len + TAG_LEN);
    out.extend_from_slice(nonce);
    out.extend_from_slice(plaintext);
    if let Some(block) = opts.padding {
        padding::pad_in_place(&mut out, NONCE_LEN, block)?;
    }
    backend.seal(
        key.expose_secret(),
        nonce,
        opts.associated_data,
        &mut out,
        NONCE_LEN,
    )?;
    Ok(out)
}

/// Decrypt `nonce ‖ ciphertext ‖ tag`. Any tampering, truncation or wrong key/associated data
/// is a [`DecryptionFailed`](crate::ErrorKind::DecryptionFailed) error.
pub fn decrypt(
    key: &DataKey,
    ciphertext: &[u8],
    opts: AttributeOptions<'_>,
) -> Result<Zeroizing<Vec<u8>>> {
    decrypt_with(Backend::default(), key, ciphertext, opts)
}

#[doc(hidden)]
pub fn decrypt_with(
    backend: Backend,
    key: &DataKey,
    ciphertext: &[u8],
    opts: AttributeOptions<'_>,
) -> Result<Zeroizing<Vec<u8>>> {
    if ciphertext.len() < NONCE_LEN + TAG_LEN {
        return Err(Error::decryption_failed());
    }
    let (nonce, body) = ciphertext.split_at(NONCE_LEN);
    let mut nonce_arr = [0u8; NONCE_LEN];
    nonce_arr.copy_from_slice(nonce);
    let mut buf = Zeroizing::new(body.to_vec());
    backend.open(
        key.expose_secret(),
        &nonce_arr,
        opts.associated_data,
        &mut buf,
    )?;
    if let Some(block) = opts.padding {
        padding::unpad_in_place(&mut buf, block)?;
    }
    Ok(buf)
}

/// [`encrypt`] and strict base64, for text columns.
pub fn encrypt_to_base64(
    key: &DataKey,
    plaintext: &[u8],
    opts: AttributeOptions<'_>,
) -> Result<String> {
    Ok(encoding::strict_encode(&encrypt(key, plaintext, opts)?))
}

/// Strict base64 then [`decrypt`], for text columns. Invalid base64 is a `BadFormat` error.
pub fn decrypt_base64(
    key: &DataKey,
    text: &str,
    opts: AttributeOptions<'_>,
) -> Result<Zeroizing<Vec<u8>>> {
    let raw = encoding::strict_decode(text)
        .map_err(|_| Error::bad_format("ciphertext column: invalid base64"))?;
    decrypt(key, &raw, opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn key() -> DataKey {
        DataKey::from_slice(&[7u8; 32]).unwrap()
    }

    #[test]
    fn round_trip_with_aad_and_padding() {
        let opts = AttributeOptions::native("email").padding(Some(16));
        let ct = encrypt(&key(), b"hello", opts).unwrap();
        assert_eq!(ct.len(), NONCE_LEN + 16 + TAG_LEN);
        assert_eq!(&decrypt(&key(), &ct, opts).unwrap()[..], b"hello");
        let moved = decrypt(
            &key(),
            &ct,
            AttributeOptions::native("phone").padding(Some(16)),
        );
        assert_eq!(moved.unwrap_err().kind(), ErrorKind::DecryptionFailed);
    }

    #[test]
    fn truncated_and_tampered_fail() {
        let ct = encrypt(&key(), b"hello", AttributeOptions::lockbox()).unwrap();
        for n in 0..ct.len() {
            assert!(decrypt(&key(), &ct[..n], AttributeOptions::lockbox()).is_err());
        }
        let mut bad = ct.clone();
        bad[NONCE_LEN] ^= 1;
        assert_eq!(
            decrypt(&key(), &bad, AttributeOptions::lockbox())
                .unwrap_err()
                .kind(),
            ErrorKind::DecryptionFailed
        );
    }
}
