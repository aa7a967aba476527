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
pub(crate) use backend::Schedules;

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

/// Encrypt `plaintext` with a fresh random nonce (see [`fresh_nonce`]).
pub fn encrypt(key: &DataKey, plaintext: &[u8], opts: AttributeOptions<'_>) -> Result<Vec<u8>> {
    let nonce = fresh_nonce()?;
    encrypt_with_nonce(Backend::default(), key, &nonce, plaintext, opts)
}

/// A random 96-bit nonce from this thread's ChaCha20 generator, which is seeded from the
/// operating system's CSPRNG on first use in each thread and again in a forked child (checked
/// by process id), so no two threads or processes continue one stream. Nonces are public; what
/// matters is that they never repeat under one key, as for nonces drawn from the OS directly —
/// at a fraction of a `getrandom` system call's cost.
pub fn fresh_nonce() -> Result<[u8; NONCE_LEN]> {
    use rand_core::{RngCore, SeedableRng};
    use std::cell::RefCell;
    thread_local! {
        static RNG: RefCell<Option<(u32, rand_chacha::ChaCha20Rng)>> = const { RefCell::new(None) };
    }
    RNG.with(|cell| {
        let mut slot = cell.borrow_mut();
        let pid = std::process::id();
        let rng = match &mut *slot {
            Some((p, rng)) if *p == pid => rng,
            _ => {
                let mut seed = Zeroizing::new([0u8; 32]);
                getrandom::fill(seed.as_mut()).map_err(|e| {
                    Error::config(format!("the OS random number generator failed: {e}"))
                })?;
                &mut slot
                    .insert((pid, rand_chacha::ChaCha20Rng::from_seed(*seed)))
                    .1
            }
        };
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        Ok(nonce)
    })
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
    backend.seal_with_key(key, nonce, opts.associated_data, &mut out, NONCE_LEN)?;
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
    backend.open_with_key(key, &nonce_arr, opts.associated_data, &mut buf)?;
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
    /// Issue 14: nonces come from a per-thread user-space generator — they must still never
    /// repeat, across draws and across threads (each thread seeds its own from the OS).
    #[test]
    fn nonces_do_not_repeat_across_draws_and_threads() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20_000 {
            assert!(seen.insert(fresh_nonce().unwrap()));
        }
        let others: Vec<[u8; NONCE_LEN]> =
            std::thread::spawn(|| (0..20_000).map(|_| fresh_nonce().unwrap()).collect())
                .join()
                .unwrap();
        for n in others {
            assert!(
                seen.insert(n),
                "another thread continued this thread's stream"
            );
        }
    }

    /// Issue 14: the AES key schedule is built once per data key (and shared by its clones).
    #[test]
    fn the_key_schedule_is_built_once_per_key() {
        let key = DataKey::generate().unwrap();
        let copy = key.clone();
        assert!(!key.schedules().is_built(Backend::default()));
        let ct = encrypt(&key, b"x", AttributeOptions::native("a")).unwrap();
        assert!(
            copy.schedules().is_built(Backend::default()),
            "shared with clones"
        );
        assert_eq!(
            &decrypt(&copy, &ct, AttributeOptions::native("a")).unwrap()[..],
            b"x"
        );
        let other = DataKey::generate().unwrap();
        assert!(!other.schedules().is_built(Backend::default()));
    }

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
