//! The per-record data key.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::cipher::Schedules;
use crate::error::{Error, ErrorKind, Result};

/// Length of a data key in bytes (AES-256).
pub const DATA_KEY_LEN: usize = 32;

/// A 256-bit data key: drawn from the OS CSPRNG, zeroized on drop, never printed. Its AES key
/// schedule is expanded on first use and kept with it (shared by clones, zeroized with the
/// last of them), so the attributes of one record don't pay for it again.
///
/// ```
/// let key = kms_fields::DataKey::generate()?;
/// assert_eq!(format!("{key:?}"), "DataKey([REDACTED])");
/// # Ok::<(), kms_fields::Error>(())
/// ```
#[derive(Clone)]
pub struct DataKey {
    bytes: Zeroizing<[u8; DATA_KEY_LEN]>,
    schedules: Arc<Schedules>,
}

impl DataKey {
    /// A fresh random key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new([0u8; DATA_KEY_LEN]);
        getrandom::fill(bytes.as_mut()).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("the OS random number generator failed: {e}"),
            )
        })?;
        Ok(Self::new(bytes))
    }

    /// A key from its bytes (e.g. a key derived from a data key).
    pub(crate) fn new(bytes: Zeroizing<[u8; DATA_KEY_LEN]>) -> Self {
        Self {
            bytes,
            schedules: Arc::default(),
        }
    }

    /// A key from exactly 32 bytes (for example the plaintext a KMS returned).
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != DATA_KEY_LEN {
            return Err(Error::bad_format(format!(
                "a data key must be {DATA_KEY_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
        key.copy_from_slice(bytes);
        Ok(Self::new(key))
    }

    /// The raw key bytes. Keep them out of logs.
    pub fn expose_secret(&self) -> &[u8; DATA_KEY_LEN] {
        &self.bytes
    }

    /// The key's expanded AES-256-GCM schedules (built on first use).
    pub(crate) fn schedules(&self) -> &Schedules {
        &self.schedules
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}

impl PartialEq for DataKey {
    /// Constant-time comparison.
    fn eq(&self, other: &Self) -> bool {
        self.bytes
            .iter()
            .zip(other.bytes.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl Eq for DataKey {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_differ() {
        let a = DataKey::generate().unwrap();
        let b = DataKey::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a, a.clone());
    }

    #[test]
    fn wrong_length_is_bad_format() {
        assert_eq!(
            DataKey::from_slice(&[1; 31]).unwrap_err().kind(),
            ErrorKind::BadFormat
        );
    }
}
