//! [`KeyColumn`]: the value of an `encrypted_kms_key` column plus the record's data-key cache.

use std::fmt;
use std::sync::OnceLock;

use crate::data_key::DataKey;
use crate::envelope::StoredKey;

/// The content of a key column (`encrypted_kms_key`, `encrypted_kms_key_<name>`), carrying the
/// record's data key once it is known, so that all attributes of a record cost one KMS call
/// per key, and a freshly loaded record needs a fresh decrypt.
///
/// States:
///
/// | stored | data key | meaning |
/// |---|---|---|
/// | `None` | none | no key yet (NULL) |
/// | `None` | cached, pending | a new data key, to be wrapped when the record is saved |
/// | `Some` | none | loaded from the database, not decrypted yet |
/// | `Some` | cached | unlocked |
///
/// The ORM crates wrap it in a column type (`kms_fields_diesel::KmsKey`,
/// `kms_fields_seaorm::KmsKey`).
#[derive(Clone, Default)]
pub struct KeyColumn {
    stored: Option<String>,
    loaded: Option<String>,
    key: OnceLock<DataKey>,
    pending: bool,
}

impl KeyColumn {
    /// A column value as read from the database.
    pub fn from_stored(stored: Option<String>) -> Self {
        Self {
            loaded: stored.clone(),
            stored,
            key: OnceLock::new(),
            pending: false,
        }
    }

    /// The stored text (`v1:…`), `None` for NULL or a pending key.
    pub fn stored(&self) -> Option<&str> {
        self.stored.as_deref()
    }

    /// The value this column had when it was loaded (the guard of a concurrent-safe update).
    pub fn loaded(&self) -> Option<&str> {
        self.loaded.as_deref()
    }

    /// The key version of the stored value (`None`: NULL, pending, or a legacy value).
    pub fn version(&self) -> Option<u32> {
        self.stored.as_deref().and_then(StoredKey::version_of)
    }

    /// Whether a data key is waiting to be wrapped.
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// Whether the data key is known (decrypted or new).
    pub fn is_unlocked(&self) -> bool {
        self.key.get().is_some()
    }

    /// The cached data key.
    pub fn cached_key(&self) -> Option<&DataKey> {
        self.key.get()
    }

    /// Cache a data key just unwrapped from the stored value.
    pub(crate) fn cache(&self, key: DataKey) -> &DataKey {
        // if another thread cached it first, ours (the same key) is dropped and zeroized
        self.key.get_or_init(|| key)
    }

    /// Cache a data key unwrapped elsewhere (bulk unlock).
    pub(crate) fn cache_unwrapped(&self, key: DataKey) {
        let _ = self.key.set(key);
    }

    /// Install a fresh data key: the stored value is cleared until the key is wrapped (used by
    /// the ORM crates' save hooks).
    pub fn set_new_key(&mut self, key: DataKey) {
        self.stored = None;
        self.key = OnceLock::from(key);
        self.pending = true;
    }

    /// Record the wrapped form of the current (pending or re-wrapped) key (used by the ORM
    /// crates' save hooks).
    pub fn set_wrapped(&mut self, stored: String) {
        self.stored = Some(stored);
        self.pending = false;
    }

    /// Clear the column and forget the key: the next write draws a new data key and needs no
    /// Decrypt (the encrypt-only writer flow). Clear the key's ciphertexts too, or they
    /// become unreadable.
    pub fn clear(&mut self) {
        self.stored = None;
        self.key = OnceLock::new();
        self.pending = false;
    }

    /// After a successful write: the stored value is now what the database holds.
    pub fn mark_saved(&mut self) {
        self.loaded = self.stored.clone();
    }
}

impl PartialEq for KeyColumn {
    /// Columns compare by stored value.
    fn eq(&self, other: &Self) -> bool {
        self.stored == other.stored
    }
}

impl fmt::Debug for KeyColumn {
    /// Shows the state only: a test-key value contains its data key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyColumn")
            .field(
                "stored",
                &self.stored.as_ref().map(|s| {
                    format_args!(
                        "v{}:…",
                        StoredKey::version_of(s).map_or("?".into(), |v| v.to_string())
                    )
                    .to_string()
                }),
            )
            .field("pending", &self.pending)
            .field("unlocked", &self.is_unlocked())
            .finish()
    }
}

/// Column types that hold a [`KeyColumn`] (the ORM crates' `KmsKey`, or `KeyColumn` itself).
pub trait AsKeyColumn {
    /// Borrow.
    fn key_column(&self) -> &KeyColumn;
    /// Borrow mutably.
    fn key_column_mut(&mut self) -> &mut KeyColumn;
}

impl AsKeyColumn for KeyColumn {
    fn key_column(&self) -> &KeyColumn {
        self
    }
    fn key_column_mut(&mut self) -> &mut KeyColumn {
        self
    }
}
