//! The offline test key, byte-compatible with kms_encrypted's `insecure-test-key`.
//!
//! Ciphertext: `8a7b1e72eadef9d6ad6be0` (hex, = `Base64.decode64("insecure+data+A")`) `":"`
//! strict_base64(plaintext), and with a context `":"` MIME base64 of the context JSON. It
//! protects nothing: use it for tests, examples and local development only.
//! `insecure-test-key/encrypt` writes the same bytes but refuses to decrypt, standing in for an
//! encrypt-only permission.

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::{Provider, ProviderKind};
use crate::context::EncryptionContext;
use crate::encoding;
use crate::error::{Error, ErrorKind, Result};

/// The test key id.
pub const KEY_ID: &str = "insecure-test-key";
/// The encrypt-only test key id.
pub const ENCRYPT_ONLY_KEY_ID: &str = "insecure-test-key/encrypt";
/// The ciphertext prefix.
pub const PREFIX: [u8; 11] = [
    0x8a, 0x7b, 0x1e, 0x72, 0xea, 0xde, 0xf9, 0xd6, 0xad, 0x6b, 0xe0,
];

/// The `insecure-test-key` provider.
#[derive(Debug, Default, Clone, Copy)]
pub struct TestKey;

#[async_trait]
impl Provider for TestKey {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Test
    }

    async fn wrap(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: Option<&EncryptionContext>,
    ) -> Result<Vec<u8>> {
        check_key_id(key_id)?;
        Ok(encrypt(plaintext, context))
    }

    async fn unwrap(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: Option<&EncryptionContext>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        check_key_id(key_id)?;
        if key_id == ENCRYPT_ONLY_KEY_ID {
            return Err(Error::new(
                ErrorKind::AccessDenied,
                "insecure-test-key/encrypt is encrypt-only: Decrypt is not permitted",
            ));
        }
        decrypt(ciphertext, context)
    }
}

fn check_key_id(key_id: &str) -> Result<()> {
    if key_id == KEY_ID || key_id == ENCRYPT_ONLY_KEY_ID {
        Ok(())
    } else {
        Err(Error::config(format!(
            "the test key provider does not serve key id {key_id}"
        )))
    }
}

/// The test-key ciphertext of `plaintext`.
pub fn encrypt(plaintext: &[u8], context: Option<&EncryptionContext>) -> Vec<u8> {
    let mut out = PREFIX.to_vec();
    out.push(b':');
    out.extend_from_slice(encoding::strict_encode(plaintext).as_bytes());
    if let Some(ctx) = context {
        out.push(b':');
        out.extend_from_slice(ctx.test_key_encoding().as_bytes());
    }
    out
}

/// Decrypt a test-key ciphertext: the context must match byte for byte.
pub fn decrypt(
    ciphertext: &[u8],
    context: Option<&EncryptionContext>,
) -> Result<Zeroizing<Vec<u8>>> {
    let mut parts = ciphertext.split(|&b| b == b':');
    let prefix = parts.next().unwrap_or_default();
    let plaintext = parts.next().unwrap_or_default();
    // Ruby's String#split drops a trailing empty field; an absent and an empty context field
    // are the same there.
    let stored_context = parts.next().filter(|c| !c.is_empty());
    if prefix != PREFIX || parts.next().is_some() {
        return Err(Error::decryption_failed());
    }
    let expected = context.map(|c| c.test_key_encoding());
    if expected.as_deref().map(str::as_bytes) != stored_context {
        return Err(Error::decryption_failed());
    }
    let text = std::str::from_utf8(plaintext).map_err(|_| Error::decryption_failed())?;
    encoding::lenient_decode(text)
        .map(Zeroizing::new)
        .map_err(|_| Error::decryption_failed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_bytes() {
        let ctx = EncryptionContext::for_model("User", 1);
        let ct = encrypt(b"hello", Some(&ctx));
        assert_eq!(
            encoding::strict_encode(&ct),
            "insecure+data+A6YUdWc2JHOD06ZXlKdGIyUmxiRjlwWkNJNklqRWlMQ0p0YjJSbGJGOXVZVzFsSWpvaVZYTmxjaUo5Cg=="
        );
        assert_eq!(&decrypt(&ct, Some(&ctx)).unwrap()[..], b"hello");
        let no_ctx = encrypt(b"hello", None);
        assert_eq!(
            encoding::strict_encode(&no_ctx),
            "insecure+data+A6YUdWc2JHOD0="
        );
    }

    #[test]
    fn context_must_match() {
        let ctx = EncryptionContext::for_model("User", 1);
        let ct = encrypt(b"k", Some(&ctx));
        for other in [
            None,
            Some(EncryptionContext::for_model("User", 2)),
            Some(EncryptionContext::new()),
        ] {
            assert_eq!(
                decrypt(&ct, other.as_ref()).unwrap_err().kind(),
                ErrorKind::DecryptionFailed
            );
        }
        let bare = encrypt(b"k", None);
        assert!(decrypt(&bare, Some(&ctx)).is_err());
        assert_eq!(&decrypt(&bare, None).unwrap()[..], b"k");
    }

    #[tokio::test]
    async fn encrypt_only_cannot_decrypt() {
        let ct = TestKey.wrap(ENCRYPT_ONLY_KEY_ID, b"k", None).await.unwrap();
        assert_eq!(ct, encrypt(b"k", None));
        let e = TestKey
            .unwrap(ENCRYPT_ONLY_KEY_ID, &ct, None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AccessDenied);
    }
}
