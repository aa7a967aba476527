//! The blind-index key hierarchy: one [`MasterKey`] per application, one [`IndexKey`] per
//! (table, bidx column), derived as the blind_index gem's `KeyGenerator` does (a CipherSweet
//! key hierarchy):
//!
//! ```text
//! root      = HKDF-SHA384(ikm = master key, salt = table, info = 0x7E×32 ‖ bidx column, L = 32)
//! index key = HMAC-SHA256(key = root, message = pack([table, bidx column, bidx column]))
//! pack      = u32 LE piece count, then for each piece: u64 LE byte length ‖ bytes
//! ```
//!
//! Invariants: key bytes live in `Zeroizing` storage, are never formatted by `Debug` and never
//! appear in an error message (errors describe lengths and positions, not contents).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha384};
use zeroize::Zeroizing;

use crate::blocking;
use crate::context::EncryptionContext;
use crate::data_key::DataKey;
use crate::error::{Error, ErrorKind, Result};
use crate::kms_box::KmsBox;

/// Length of a master key and of an index key, in bytes.
pub const KEY_LEN: usize = 32;

/// The environment variable the blind_index gem reads its master key from.
pub const MASTER_KEY_ENV: &str = "BLIND_INDEX_MASTER_KEY";

/// Process-unique identities of master keys, so a [`BlindIndex`](super::BlindIndex) can tell
/// whether its cached index key was derived from the master key it is given (clones share an
/// identity; identities are never reused).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The blind-index master key: 32 bytes, zeroized on drop, never printed.
///
/// Sources, from least to most protected at rest:
/// - [`from_hex`](Self::from_hex) / [`from_env`](Self::from_env): 64 hex digits, as the
///   blind_index gem takes them (`BLIND_INDEX_MASTER_KEY`);
/// - [`from_wrapped`](Self::from_wrapped): a `vN:` value made by [`wrap`](Self::wrap) (that is,
///   [`KmsBox::encrypt`]), unwrapped by the KMS once at start-up, so the key is not stored on the
///   application server; [`resolve`](Self::resolve) accepts either form.
///
/// ```
/// use kms_fields::blind_index::MasterKey;
///
/// let key = MasterKey::from_hex(&"0".repeat(64))?;
/// assert_eq!(format!("{key:?}"), "MasterKey([REDACTED])");
/// let fresh = MasterKey::generate()?;
/// assert_eq!(MasterKey::from_hex(&fresh.to_hex())?, fresh);
/// assert!(MasterKey::from_hex("abc").is_err());
/// # Ok::<(), kms_fields::Error>(())
/// ```
pub struct MasterKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    id: u64,
}

impl MasterKey {
    fn new(bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        Self {
            bytes,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// A fresh random key from the OS CSPRNG (the gem's `BlindIndex.generate_key`). Store its
    /// [`to_hex`](Self::to_hex) form, or better its [`wrap`](Self::wrap)ped form.
    pub fn generate() -> Result<Self> {
        let key = DataKey::generate()?;
        Ok(Self::new(Zeroizing::new(*key.expose_secret())))
    }

    /// A key from exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(Self::new(key_from_slice(bytes, "blind index master key")?))
    }

    /// A key from 64 hex digits (either case; surrounding whitespace is ignored).
    pub fn from_hex(hex: &str) -> Result<Self> {
        Ok(Self::new(decode_hex_key(hex, "blind index master key")?))
    }

    /// The hex key in `BLIND_INDEX_MASTER_KEY` ([`MASTER_KEY_ENV`]).
    pub fn from_env() -> Result<Self> {
        Self::from_env_var(MASTER_KEY_ENV)
    }

    /// The hex key in the environment variable `name`.
    pub fn from_env_var(name: &str) -> Result<Self> {
        let value = Zeroizing::new(std::env::var(name).map_err(|_| {
            Error::config(format!(
                "{name} is not set (or not UTF-8): expected the blind index master key as 64 hex \
                 digits"
            ))
        })?);
        if looks_wrapped(&value) {
            return Err(Error::config(format!(
                "{name} holds a KMS-wrapped key: load it with MasterKey::resolve and a KmsBox"
            )));
        }
        Self::from_hex(&value).map_err(|e| e.context(name))
    }

    /// Unwrap a `vN:` value made by [`wrap`](Self::wrap) (or by [`KmsBox::encrypt`] on the 32
    /// key bytes or on their 64 hex digits): one KMS `Decrypt`, to be done once at start-up.
    /// `context` must be the encryption context used to wrap it.
    pub async fn from_wrapped(
        kms_box: &KmsBox,
        wrapped: &str,
        context: Option<&EncryptionContext>,
    ) -> Result<Self> {
        let plain = kms_box
            .decrypt(wrapped.trim(), context)
            .await
            .map_err(|e| e.context("blind index master key"))?;
        match plain.len() {
            KEY_LEN => Self::from_bytes(&plain),
            n if n == 2 * KEY_LEN => match std::str::from_utf8(&plain) {
                Ok(hex) => Self::from_hex(hex),
                Err(_) => Err(unwrapped_length(n)),
            },
            n => Err(unwrapped_length(n)),
        }
    }

    /// [`from_wrapped`](Self::from_wrapped) from synchronous code (see [`crate::blocking`]).
    pub fn from_wrapped_blocking(
        kms_box: &KmsBox,
        wrapped: &str,
        context: Option<&EncryptionContext>,
    ) -> Result<Self> {
        blocking::run(Self::from_wrapped(kms_box, wrapped, context))
    }

    /// A master key given either as 64 hex digits or as a KMS-wrapped `vN:` value (unwrapped
    /// with `kms_box`) — so one setting (e.g. `BLIND_INDEX_MASTER_KEY`) can move from the
    /// plain to the wrapped form without code changes.
    pub async fn resolve(
        text: &str,
        kms_box: &KmsBox,
        context: Option<&EncryptionContext>,
    ) -> Result<Self> {
        if looks_wrapped(text) {
            Self::from_wrapped(kms_box, text, context).await
        } else {
            Self::from_hex(text)
        }
    }

    /// [`resolve`](Self::resolve) from synchronous code.
    pub fn resolve_blocking(
        text: &str,
        kms_box: &KmsBox,
        context: Option<&EncryptionContext>,
    ) -> Result<Self> {
        blocking::run(Self::resolve(text, kms_box, context))
    }

    /// Wrap the key with the KMS (one `Encrypt` of the 32 raw bytes): the `vN:` text to store
    /// in configuration instead of the hex key.
    pub async fn wrap(
        &self,
        kms_box: &KmsBox,
        context: Option<&EncryptionContext>,
    ) -> Result<String> {
        kms_box
            .encrypt(self.bytes.as_ref(), context)
            .await
            .map_err(|e| e.context("blind index master key"))
    }

    /// [`wrap`](Self::wrap) from synchronous code.
    pub fn wrap_blocking(
        &self,
        kms_box: &KmsBox,
        context: Option<&EncryptionContext>,
    ) -> Result<String> {
        blocking::run(self.wrap(kms_box, context))
    }

    /// The key as 64 lower-case hex digits (zeroized on drop). Keep it out of logs.
    pub fn to_hex(&self) -> Zeroizing<String> {
        encode_hex(self.bytes.as_ref())
    }

    /// The raw key bytes. Keep them out of logs.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }
}

impl Clone for MasterKey {
    /// A copy with the same identity (a cached index key stays valid for it).
    fn clone(&self) -> Self {
        Self {
            bytes: self.bytes.clone(),
            id: self.id,
        }
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

impl PartialEq for MasterKey {
    /// Constant-time comparison of the key bytes.
    fn eq(&self, other: &Self) -> bool {
        ct_eq(self.bytes.as_ref(), other.bytes.as_ref())
    }
}

impl Eq for MasterKey {}

/// The 32-byte key of one blind index (the Argon2id / PBKDF2 salt), derived from the master
/// key, the table and the bidx column. Zeroized on drop, never printed.
///
/// ```
/// use kms_fields::blind_index::{IndexKey, MasterKey};
///
/// // The blind_index gem's known answer.
/// let master = MasterKey::from_hex(&"0".repeat(64))?;
/// let key = IndexKey::derive(&master, "users", "email_bidx")?;
/// assert_eq!(
///     key.to_hex().as_str(),
///     "289737bab72fa97b1f4b081cef00d7b7d75034bcf3183c363feaf3e6441777bc"
/// );
/// assert_eq!(format!("{key:?}"), "IndexKey([REDACTED])");
/// # Ok::<(), kms_fields::Error>(())
/// ```
#[derive(Clone)]
pub struct IndexKey(Zeroizing<[u8; KEY_LEN]>);

impl IndexKey {
    /// Derive the key of the index stored in `bidx_column` of `table` (the gem's
    /// `BlindIndex.index_key(table:, bidx_attribute:)`). Both names must be non-empty.
    pub fn derive(master: &MasterKey, table: &str, bidx_column: &str) -> Result<Self> {
        if table.is_empty() {
            return Err(Error::config(
                "blind index: missing table for key derivation",
            ));
        }
        if bidx_column.is_empty() {
            return Err(Error::config(format!(
                "blind index on {table}: missing bidx column for key derivation"
            )));
        }
        let mut info = Vec::with_capacity(32 + bidx_column.len());
        info.extend_from_slice(&[0x7E; 32]);
        info.extend_from_slice(bidx_column.as_bytes());
        let mut root = Zeroizing::new([0u8; KEY_LEN]);
        Hkdf::<Sha384>::new(Some(table.as_bytes()), master.expose_secret())
            .expand(&info, root.as_mut())
            .map_err(|_| derivation_failed(table, bidx_column))?;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(root.as_ref())
            .map_err(|_| derivation_failed(table, bidx_column))?;
        mac.update(&pack(&[
            table.as_bytes(),
            bidx_column.as_bytes(),
            bidx_column.as_bytes(),
        ]));
        let tag = mac.finalize().into_bytes();
        Self::from_bytes(&tag)
    }

    /// An index key given directly (32 bytes), as the gem's per-index `key:` option allows.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(Self(key_from_slice(bytes, "blind index key")?))
    }

    /// An index key given as 64 hex digits (the form the gem's `BlindIndex.index_key` returns).
    pub fn from_hex(hex: &str) -> Result<Self> {
        Ok(Self(decode_hex_key(hex, "blind index key")?))
    }

    /// The key as 64 lower-case hex digits (zeroized on drop), e.g. to share an index with
    /// another application. Keep it out of logs.
    pub fn to_hex(&self) -> Zeroizing<String> {
        encode_hex(self.0.as_ref())
    }

    /// The raw key bytes. Keep them out of logs.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IndexKey([REDACTED])")
    }
}

impl PartialEq for IndexKey {
    /// Constant-time comparison of the key bytes.
    fn eq(&self, other: &Self) -> bool {
        ct_eq(self.0.as_ref(), other.0.as_ref())
    }
}

impl Eq for IndexKey {}

/// The gem's `pack`: u32 LE count, then per piece u64 LE length and bytes.
fn pack(pieces: &[&[u8]]) -> Vec<u8> {
    let total: usize = pieces.iter().map(|p| 8 + p.len()).sum();
    let mut out = Vec::with_capacity(4 + total);
    out.extend_from_slice(&(pieces.len() as u32).to_le_bytes());
    for piece in pieces {
        out.extend_from_slice(&(piece.len() as u64).to_le_bytes());
        out.extend_from_slice(piece);
    }
    out
}

/// Whether `text` looks like a `vN:` KMS-wrapped value rather than hex (`v` is not a hex digit).
fn looks_wrapped(text: &str) -> bool {
    let text = text.trim();
    text.strip_prefix('v')
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(version, _)| {
            !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit())
        })
}

fn derivation_failed(table: &str, column: &str) -> Error {
    Error::config(format!(
        "blind index {table}.{column}: key derivation failed"
    ))
}

fn unwrapped_length(n: usize) -> Error {
    Error::new(
        ErrorKind::BadFormat,
        format!(
            "the unwrapped blind index master key is {n} bytes; expected {KEY_LEN} bytes \
             (or {} hex digits)",
            2 * KEY_LEN
        ),
    )
}

fn key_from_slice(bytes: &[u8], what: &str) -> Result<Zeroizing<[u8; KEY_LEN]>> {
    if bytes.len() != KEY_LEN {
        return Err(Error::config(format!(
            "a {what} must be {KEY_LEN} bytes, got {}",
            bytes.len()
        )));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(bytes);
    Ok(key)
}

/// Decode 64 hex digits. Errors name the length or the position of a bad digit, never a digit.
fn decode_hex_key(hex: &str, what: &str) -> Result<Zeroizing<[u8; KEY_LEN]>> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 2 * KEY_LEN {
        return Err(Error::config(format!(
            "a {what} must be {} hex digits ({KEY_LEN} bytes), got {} characters",
            2 * KEY_LEN,
            hex.len()
        )));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    for (i, (pair, out)) in hex.chunks_exact(2).zip(key.iter_mut()).enumerate() {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(hi), Some(lo)) => *out = (hi << 4) | lo,
            (hi, _) => {
                let at = 2 * i + usize::from(hi.is_some());
                return Err(Error::config(format!(
                    "a {what} must be {} hex digits: character {} is not a hex digit",
                    2 * KEY_LEN,
                    at + 1
                )));
            }
        }
    }
    Ok(key)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn encode_hex(bytes: &[u8]) -> Zeroizing<String> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Zeroizing::new(String::with_capacity(2 * bytes.len()));
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_layout() {
        assert_eq!(
            pack(&[b"ab", b""]),
            [
                2, 0, 0, 0, // count
                2, 0, 0, 0, 0, 0, 0, 0, b'a', b'b', // "ab"
                0, 0, 0, 0, 0, 0, 0, 0, // ""
            ]
        );
    }

    #[test]
    fn gem_known_answer() {
        let master = MasterKey::from_hex(&"0".repeat(64)).unwrap();
        assert_eq!(master.expose_secret(), &[0u8; 32]);
        let key = IndexKey::derive(&master, "users", "email_bidx").unwrap();
        assert_eq!(
            key.to_hex().as_str(),
            "289737bab72fa97b1f4b081cef00d7b7d75034bcf3183c363feaf3e6441777bc"
        );
    }

    #[test]
    fn hex_round_trip_and_case() {
        let k = MasterKey::generate().unwrap();
        let hex = k.to_hex();
        assert_eq!(MasterKey::from_hex(&hex).unwrap(), k);
        assert_eq!(MasterKey::from_hex(&hex.to_uppercase()).unwrap(), k);
        assert_eq!(
            MasterKey::from_hex(&format!(" {}\n", hex.as_str())).unwrap(),
            k
        );
        assert_ne!(MasterKey::generate().unwrap(), k);
    }

    #[test]
    fn bad_hex_names_position_not_digit() {
        let mut hex = "ab".repeat(32);
        hex.replace_range(9..10, "z");
        let e = MasterKey::from_hex(&hex).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("character 10"), "{e}");
        assert!(!e.to_string().contains("abab"), "{e}");
        let e = MasterKey::from_hex(&"ab".repeat(31)).unwrap_err();
        assert!(e.to_string().contains("got 62 characters"), "{e}");
        // multi-byte characters never split a char boundary
        let e = MasterKey::from_hex(&"é".repeat(32)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
    }

    #[test]
    fn wrapped_detection() {
        assert!(looks_wrapped("v1:abc"));
        assert!(looks_wrapped(" v12:abc\n"));
        assert!(!looks_wrapped(&"0".repeat(64)));
        assert!(!looks_wrapped("v:abc"));
        assert!(!looks_wrapped("vx:abc"));
    }

    #[test]
    fn empty_names_are_config_errors() {
        let m = MasterKey::generate().unwrap();
        assert_eq!(
            IndexKey::derive(&m, "", "a_bidx").unwrap_err().kind(),
            ErrorKind::Config
        );
        assert_eq!(
            IndexKey::derive(&m, "users", "").unwrap_err().kind(),
            ErrorKind::Config
        );
    }

    #[test]
    fn clones_share_identity() {
        let a = MasterKey::generate().unwrap();
        let b = MasterKey::from_bytes(a.expose_secret()).unwrap();
        assert_eq!(a.clone().id(), a.id());
        assert_ne!(a.id(), b.id());
        assert_eq!(a, b);
    }
}
