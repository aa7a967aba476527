//! Reading values written by the kms_rails gem (feature `kms-rails`), to migrate them.
//!
//! kms_rails stored `<attr>_enc` in a binary column as the MessagePack map
//! `{"key" => <GenerateDataKey CiphertextBlob>, "iv" => <16 bytes>, "blob" => <AES-256-CBC
//! ciphertext, PKCS#7 padded>}` — one data key per *value*, unauthenticated CBC, an optional
//! encryption context of one pair `{context_key => context_value}`. With `msgpack: true` the
//! plaintext itself is MessagePack.
//!
//! kms-fields reads these (never writes them). Mark the attribute `#[kms(encrypted, kms_rails)]`:
//! while the record's key column is NULL its value is read as a kms_rails envelope; the first
//! write, or `rotate_kms_key`, rewrites every kms_rails value of that key in the per-record
//! format.
//!
//! **Migrate, then remove the flag.** CBC input is unauthenticated: envelopes can be moved
//! between records and bits flipped through the IV by anyone who can write the database. So:
//! - only a value that *is* a kms_rails envelope in form is read as one (a native value whose
//!   key column was NULLed is a `BadFormat` error, never fed to CBC);
//! - every failure after the CBC step — bad padding, or a plaintext that does not decode into
//!   the attribute's type — is the same `DecryptionFailed`, so errors are no padding oracle;
//! - [`crate::table::migrate_kms_rails_table`] (the CLI's `kms-fields migrate-kms-rails`)
//!   moves a whole table to the per-record format and reports when no kms_rails value is left
//!   (`Summary::remaining == 0`, "finished"); remove the `kms_rails` flag from the model then —
//!   while it is there, a NULLed key column makes reads take this path.

use std::fmt;

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, KeyIvInit};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::context::EncryptionContext;
use crate::encoding;
use crate::error::{Error, ErrorKind, Result};
use crate::keyring::KeyVersion;
use crate::kms::Kms;

/// A parsed kms_rails envelope.
#[derive(Clone)]
pub struct Envelope {
    key: Vec<u8>,
    iv: [u8; 16],
    blob: Vec<u8>,
}

#[derive(Deserialize)]
struct Raw {
    key: serde_bytes::ByteBuf,
    iv: serde_bytes::ByteBuf,
    blob: serde_bytes::ByteBuf,
}

impl Envelope {
    /// Parse the stored MessagePack map (values as `bin` or `str`).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let raw: Raw = rmp_serde::from_slice(bytes).map_err(|_| {
            Error::bad_format("not a kms_rails value (MessagePack map with key, iv, blob)")
        })?;
        Self::from_parts(raw.key.into_vec(), &raw.iv, raw.blob.into_vec())
    }

    /// From the strict-base64 parts kms_rails put in ActiveJob arguments
    /// (`{"key" => …, "iv" => …, "blob" => …}`).
    pub fn from_base64_parts(key: &str, iv: &str, blob: &str) -> Result<Self> {
        Self::from_parts(
            encoding::strict_decode(key)?,
            &encoding::strict_decode(iv)?,
            encoding::strict_decode(blob)?,
        )
    }

    fn from_parts(key: Vec<u8>, iv: &[u8], blob: Vec<u8>) -> Result<Self> {
        let iv: [u8; 16] = iv
            .try_into()
            .map_err(|_| Error::bad_format("kms_rails value: the IV is not 16 bytes"))?;
        if key.is_empty() || blob.is_empty() || !blob.len().is_multiple_of(16) {
            return Err(Error::bad_format(
                "kms_rails value: empty key or ciphertext not a whole number of blocks",
            ));
        }
        Ok(Self { key, iv, blob })
    }

    /// Unwrap the value's data key with the KMS (AWS `Decrypt` of the `key` blob, with the
    /// optional one-pair context) and decrypt the value.
    pub async fn decrypt(
        &self,
        kms: &Kms,
        key: &KeyVersion,
        context: Option<(&str, &str)>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let ctx = context.map(|(k, v)| EncryptionContext::new().with(k, v));
        let data_key = kms.unwrap_with(key, &self.key, ctx.as_ref()).await?;
        decrypt_cbc(&data_key, &self.iv, &self.blob)
    }
}

/// AES-256-CBC with PKCS#7, as OpenSSL's default. Bad padding is `DecryptionFailed`.
pub fn decrypt_cbc(key: &[u8], iv: &[u8; 16], ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let key: &[u8; 32] = key
        .try_into()
        .map_err(|_| Error::new(ErrorKind::BadFormat, "kms_rails data key is not 32 bytes"))?;
    let dec = cbc::Decryptor::<aes::Aes256>::new(key.into(), iv.into());
    dec.decrypt_padded_vec::<Pkcs7>(ciphertext)
        .map(Zeroizing::new)
        .map_err(|_| Error::decryption_failed())
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("key_len", &self.key.len())
            .field("blob_len", &self.blob.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_values_are_errors() {
        for bad in [&b""[..], b"\x80", b"\x83\xa3key\xc4\x00", &[0xff; 40]] {
            assert_eq!(
                Envelope::parse(bad).unwrap_err().kind(),
                ErrorKind::BadFormat
            );
        }
        // str values are accepted (as the gem's reader does); IV must be 16 bytes
        assert!(Envelope::parse(b"\x83\xa3key\xa3baz\xa2iv\xa3foo\xa4blob\xa3bar").is_err());
        assert!(decrypt_cbc(&[0; 32], &[0; 16], &[1; 16]).is_err());
    }
}
