//! Models with encrypted attributes: the trait `#[derive(KmsEncrypted)]` implements, and the
//! generic operations its generated methods call. No ORM types here: the Diesel and SeaORM
//! crates add the save flows on top.
//!
//! The data of a save travels one way: the model's setter encrypts the value under the
//! record's data key (drawn fresh, or unwrapped once from the key column) → the save flow wraps
//! a new data key with the KMS, with the record's encryption context → the ORM writes the row.

mod blind_index;
mod ciphertext;
mod handle;
mod key_column;
mod ops;

pub use blind_index::{
    bidx_bytes, bidx_text, blind_index_value, blind_index_value_async, blind_index_values,
};

pub use ciphertext::{CiphertextColumn, StoredCiphertext};
pub use handle::{AttrHandle, BidxHandle, KeyHandle};
pub use key_column::{AsKeyColumn, KeyColumn};
pub use ops::{
    data_key, read_attribute, rewrap_key, rotate_key, seal_pending_keys, unlock, write_attribute,
};

use crate::context::EncryptionContext;
use crate::error::{Error, ErrorKind, Result};
use crate::keyring::KeySpec;

/// One key of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDef {
    /// `None` for the default key, else the name (`phone`).
    pub name: Option<&'static str>,
    /// `kms_key` / `kms_key_<name>`.
    pub method: &'static str,
    /// The key column (`encrypted_kms_key` / `encrypted_kms_key_<name>`).
    pub column: &'static str,
    /// The key also encrypts files (`key(..., attachments)`): a rotation must re-encrypt them,
    /// so the plain `rotate_kms_key` and a `NewDataKey` table rotation refuse it (kms_encrypted:
    /// "Can't rotate key used for encrypted files"); re-wraps keep the data key and are fine.
    pub attachments: bool,
}

/// One encrypted attribute of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttrDef {
    /// Logical name (`email`).
    pub name: &'static str,
    /// Ciphertext column (`email_enc`, or `email_ciphertext` in Lockbox mode).
    pub column: &'static str,
    /// Index into [`KmsModel::KEYS`].
    pub key: usize,
    /// Associated data (native mode: the logical name; Lockbox mode: empty).
    pub associated_data: &'static [u8],
    /// ISO/IEC 7816-4 padding block, if any.
    pub padding: Option<usize>,
    /// Whether the column is binary (raw bytes) rather than text (base64).
    pub binary: bool,
    /// While the key column is NULL, the value is a kms_rails envelope (feature `kms-rails`),
    /// with this optional one-pair encryption context.
    pub kms_rails: Option<KmsRailsAttr>,
}

/// One blind index of a model (see [`crate::blind_index`]): `#[kms(encrypted, blind_index(...))]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BidxDef {
    /// Index into [`KmsModel::ATTRIBUTES`] of the indexed attribute.
    pub attr: usize,
    /// The bidx column (`email_bidx`).
    pub column: &'static str,
    /// Raw bytes in a binary column, rather than base64 text.
    pub binary: bool,
    /// Whether the column should carry a unique index (used by the migration helpers).
    pub unique: bool,
    /// The name of the [`Kms`](crate::Kms) blind-index master key (`None`: the default one).
    pub master_key: Option<&'static str>,
}

/// A kms_rails attribute being migrated (see [`crate::kms_rails`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KmsRailsAttr {
    /// kms_rails' `context_key` / `context_value`, if it had one.
    pub context: Option<(&'static str, &'static str)>,
}

impl AttrDef {
    /// The cipher options of this attribute.
    pub fn options(&self) -> crate::cipher::AttributeOptions<'static> {
        crate::cipher::AttributeOptions {
            associated_data: self.associated_data,
            padding: self.padding,
        }
    }
}

/// How a new record's data keys are wrapped when it is inserted (README.md, "Save flows").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaveFlow {
    /// Pick per database: `Prefetch` on Postgres for a new integer id, `Eager` when the id is
    /// already known, else `AfterInsert`.
    Auto,
    /// Postgres: `nextval` the id, wrap, one INSERT — no KMS call inside a transaction.
    Prefetch,
    /// The context needs no database id (client-generated id, custom context): wrap, INSERT.
    Eager,
    /// Transaction { INSERT, wrap with the new id, UPDATE the key columns } — kms_encrypted's flow.
    AfterInsert,
}

/// The type of a model's primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// An integer assigned by the database (serial, auto-increment, rowid).
    Integer,
    /// Any other id (UUID, string): the application sets it.
    Other,
}

/// A model with encrypted attributes. Implemented by `#[derive(KmsEncrypted)]`; the methods
/// with an index take positions in [`KEYS`](Self::KEYS) / [`ATTRIBUTES`](Self::ATTRIBUTES).
pub trait KmsModel: Send + Sync {
    /// The model name of the default context.
    const MODEL_NAME: &'static str;
    /// The table, when known (`#[diesel(table_name)]`, `#[sea_orm(table_name)]`, `#[kms(table)]`).
    const TABLE: Option<&'static str>;
    /// The primary key column.
    const ID_COLUMN: &'static str;
    /// The primary key's type.
    const ID_KIND: IdKind;
    /// The configured save flow.
    const SAVE_FLOW: SaveFlow;
    /// The Postgres sequence of the id, if set explicitly (default: `pg_get_serial_sequence`).
    const SEQUENCE: Option<&'static str>;
    /// The model's keys.
    const KEYS: &'static [KeyDef];
    /// The model's encrypted attributes.
    const ATTRIBUTES: &'static [AttrDef];
    /// The model's blind indexes.
    const BLIND_INDEXES: &'static [BidxDef] = &[];

    /// The index computation of blind index `bidx` (a position in
    /// [`BLIND_INDEXES`](Self::BLIND_INDEXES)).
    fn blind_index(bidx: usize) -> Result<&'static crate::blind_index::BlindIndex> {
        let _ = bidx;
        Err(Error::new(
            ErrorKind::Config,
            format!("{} has no blind index #{bidx}", Self::MODEL_NAME),
        ))
    }

    /// The stored value of blind index `bidx`'s column on this record (a position in
    /// [`BLIND_INDEXES`](Self::BLIND_INDEXES)): what [`crate::save::update_encrypted`] writes
    /// beside the ciphertexts, so a changed attribute never leaves a stale index.
    fn blind_index_column(&self, bidx: usize) -> StoredCiphertext<'_> {
        let _ = bidx;
        StoredCiphertext::Text(None)
    }

    /// The key spec of key `key`.
    fn key_spec(key: usize) -> &'static KeySpec;
    /// The record's id as text, `None` while the database has not assigned it.
    fn record_id(&self) -> Option<String>;
    /// Set the id the database assigned (integer ids).
    fn set_record_id(&mut self, id: i64) -> Result<()>;
    /// Forget a database-assigned id (after a rolled-back insert). No-op for required ids.
    fn clear_record_id(&mut self) {}
    /// The key column of key `key`.
    fn key_column(&self, key: usize) -> &KeyColumn;
    /// The key column of key `key`, mutably.
    fn key_column_mut(&mut self, key: usize) -> &mut KeyColumn;
    /// The ciphertext column of attribute `attr`.
    fn ciphertext(&self, attr: usize) -> &dyn CiphertextColumn;
    /// The ciphertext column of attribute `attr`, mutably.
    fn ciphertext_mut(&mut self, attr: usize) -> &mut dyn CiphertextColumn;

    /// The encryption context of key `key` for `version`. Default:
    /// `{"model_name": MODEL_NAME, "model_id": <id>}`; the derive overrides it with a custom
    /// context function.
    fn encryption_context(&self, key: usize, version: u32) -> Result<Option<EncryptionContext>> {
        let _ = (key, version);
        default_context(Self::MODEL_NAME, self.record_id())
    }

    /// The key id of the current version computed for this record (multi-tenant keys).
    fn key_id_for(&self, key: usize) -> Option<String> {
        let _ = key;
        None
    }

    /// Whether the context of key `key` needs the database id (the default context does).
    fn context_needs_id(key: usize) -> bool {
        let _ = key;
        true
    }
}

/// The ActiveModel of a SeaORM entity whose `Model` derives `KmsEncrypted` (generated): typed
/// access to its key columns for the save hooks of `kms-fields-seaorm`.
pub trait KmsActiveModel: Send + Sync {
    /// The entity's model.
    type Model: KmsModel;
    /// The key column of key `key` when the field is `Set` or `Unchanged`.
    fn kms_key_column(&self, key: usize) -> Option<&KeyColumn>;
    /// The same, mutably; the field becomes `Set` so it is written.
    fn kms_key_column_mut(&mut self, key: usize) -> Option<&mut KeyColumn>;
    /// The id, when set and assigned.
    fn kms_record_id(&self) -> Option<String>;
    /// Set the id.
    fn kms_set_record_id(&mut self, id: i64) -> Result<()>;
    /// Leave an unassigned integer id (0, or `None`) to the database: the field becomes
    /// `NotSet`.
    fn kms_unset_unassigned_id(&mut self) {}
}

/// `{"model_name": name, "model_id": id}`, or `MissingId` when the id is not known yet.
pub fn default_context(model_name: &str, id: Option<String>) -> Result<Option<EncryptionContext>> {
    match id {
        Some(id) => Ok(Some(EncryptionContext::for_model(model_name, id))),
        None => Err(Error::new(
            ErrorKind::MissingId,
            format!(
                "id needed for encryption context of {model_name}: save the record first or use a save flow that assigns it"
            ),
        )),
    }
}

/// `User#7 kms_key` — where an error happened (never a value).
pub(crate) fn location<M: KmsModel + ?Sized>(m: &M, what: &str) -> String {
    match m.record_id() {
        Some(id) => format!("{}#{id} {what}", M::MODEL_NAME),
        None => format!("{} (new) {what}", M::MODEL_NAME),
    }
}
