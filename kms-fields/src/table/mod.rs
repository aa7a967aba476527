//! Rotation and backfill over whole tables, in primary-key batches, without downtime — the
//! backend-agnostic engine behind `kms_fields_diesel::rotation` and
//! `kms_fields_seaorm::rotation`. No ORM types here: the ORM crates implement [`TableDb`]
//! (run a statement, load rows, begin / commit) and call [`rotate_table`] / [`backfill_table`].
//!
//! [`rotate_table`] moves every row whose key column is not `v<current>:` to the current key
//! version:
//!
//! - [`RotationMode::Rewrap`] (default): same data key, wrapped again with the current
//!   version's key id and context (AWS `ReEncrypt` / Vault `rewrap` when both versions use the
//!   same provider); ciphertexts are untouched;
//! - [`RotationMode::NewDataKey`]: kms_encrypted's `rotate_kms_key!` for every row — a new data
//!   key and every attribute of that key re-encrypted.
//!
//! It never loads the whole table: rows are selected in batches by primary key
//! (`WHERE key NOT LIKE 'v<current>:%' AND id > <last> ORDER BY id LIMIT <batch>`), KMS calls
//! run concurrently up to a bound and under an optional requests-per-second limit (counted per
//! KMS request, see [`Kms::with_rate_limit`](crate::Kms::with_rate_limit)), and each row is
//! written with a guarded `UPDATE … WHERE id = ? AND <key column> = <old value>` (and, in
//! `NewDataKey` mode, its old ciphertexts too), so a concurrent application write is never
//! overwritten: the row is re-read and retried. A killed run leaves every row either old or
//! new, both readable; running it again finishes the job.
//!
//! On Postgres each batch is selected `FOR UPDATE SKIP LOCKED` inside a transaction and written
//! with ONE `UPDATE … FROM (VALUES …)`, so several processes share the work. The batch's rows
//! stay locked while their KMS calls run: an application write to one of them waits for the
//! batch (at most `batch_size / concurrency` KMS round trips) — lower `batch_size` to shorten it.
//!
//! [`backfill_table`] encrypts existing plaintext columns into the ciphertext and key columns
//! (Lockbox's `migrate`), resumable the same way; [`backfill_blind_index`] fills a blind-index
//! column of existing rows (a new index, or the second column of an index being rotated).
//!
//! [`migrate_kms_rails_table`] moves the values a table still holds in the kms_rails gem's
//! format (feature `kms-rails`) to the per-record format, and says when none are left — the
//! moment to remove the attribute's `kms_rails` flag (see [`crate::kms_rails`]).

mod blind_index;
mod compute;
#[cfg(feature = "kms-rails")]
mod kms_rails;
mod run;
mod statements;

pub use blind_index::backfill_blind_index;
#[cfg(feature = "kms-rails")]
pub use kms_rails::migrate_kms_rails_table;
pub(crate) use run::finish;
pub use run::{Row, TableDb, backfill_table, key_versions, rotate_table};

use std::time::Duration;

use crate::cipher::AttributeOptions;
use crate::context::EncryptionContext;
use crate::error::{Error, ErrorKind, Result};
use crate::keyring::KeySpec;
use crate::model::{IdKind, KeyHandle, KmsModel};

/// One encrypted attribute column of a [`TableSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrSpec {
    /// The ciphertext column.
    pub column: String,
    /// Binary column (raw bytes) or text (base64).
    pub binary: bool,
    /// Associated data (native mode: the attribute name; Lockbox mode: empty).
    pub associated_data: Vec<u8>,
    /// ISO/IEC 7816-4 padding block.
    pub padding: Option<usize>,
    /// The column may still hold kms_rails values (read while the key column is NULL), with
    /// their context; `None` for a native attribute. Only [`migrate_kms_rails_table`] reads it.
    pub kms_rails: Option<KmsRailsSource>,
}

/// A column that held kms_rails `kms_attr` values: the gem's optional one-pair encryption
/// context (`context_key` / `context_value`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KmsRailsSource {
    /// `(context_key, context_value)`, if the attribute had one.
    pub context: Option<(String, String)>,
}

impl AttrSpec {
    pub(crate) fn options(&self) -> AttributeOptions<'_> {
        AttributeOptions {
            associated_data: &self.associated_data,
            padding: self.padding,
        }
    }
}

/// What a table operation needs to know: where the key column and ciphertexts are, and how to
/// build each row's default context `{model_name, model_id}`.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// Table name.
    pub table: String,
    /// Primary key column.
    pub id_column: String,
    /// Integer ids (batched numerically) or other ids (batched by their text).
    pub id_kind: IdKind,
    /// The model name of the context.
    pub model_name: String,
    /// The key column (`encrypted_kms_key`).
    pub key_column: String,
    /// The key's versions.
    pub spec: KeySpec,
    /// The attributes encrypted under this key (needed by `NewDataKey` and backfill).
    pub attributes: Vec<AttrSpec>,
    /// The key also encrypts files: a [`RotationMode::NewDataKey`] rotation is refused (it
    /// would leave them unreadable); a re-wrap is fine.
    pub encrypts_files: bool,
}

impl TableSpec {
    /// A table with an integer `id`, no attributes (enough for a re-wrap).
    ///
    /// ```
    /// use kms_fields::KeySpec;
    /// use kms_fields::table::TableSpec;
    /// let spec = KeySpec::new().key_id("alias/users-2026").version(2).previous_version(1, "alias/users");
    /// let t = TableSpec::new("users", "User", "encrypted_kms_key", spec);
    /// assert_eq!(t.id_column, "id");
    /// ```
    pub fn new(
        table: impl Into<String>,
        model_name: impl Into<String>,
        key_column: impl Into<String>,
        spec: KeySpec,
    ) -> Self {
        Self {
            table: table.into(),
            id_column: "id".into(),
            id_kind: IdKind::Integer,
            model_name: model_name.into(),
            key_column: key_column.into(),
            spec,
            attributes: Vec::new(),
            encrypts_files: false,
        }
    }

    /// Key `key` of model `M` (the derive's `User::KMS_KEY`), with its attributes. Models whose context is custom or whose key
    /// id is computed per record need their own loop over loaded records (`rotate_kms_key` per
    /// record): this returns a `Config` error for them.
    pub fn of_model<M: KmsModel>(handle: KeyHandle<M>) -> Result<Self> {
        let key = handle.index();
        let def = M::KEYS.get(key).ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("{} has no key #{key}", M::MODEL_NAME),
            )
        })?;
        if !M::context_needs_id(key) {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{} {}: a custom encryption context needs the model: rotate loaded records instead",
                    M::MODEL_NAME,
                    def.method
                ),
            ));
        }
        let table = M::TABLE.ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("{}: table name unknown", M::MODEL_NAME),
            )
        })?;
        Ok(Self {
            table: table.into(),
            id_column: M::ID_COLUMN.into(),
            id_kind: M::ID_KIND,
            model_name: M::MODEL_NAME.into(),
            key_column: def.column.into(),
            spec: M::key_spec(key).clone(),
            attributes: M::ATTRIBUTES
                .iter()
                .filter(|a| a.key == key)
                .map(|a| AttrSpec {
                    column: a.column.into(),
                    binary: a.binary,
                    associated_data: a.associated_data.to_vec(),
                    padding: a.padding,
                    kms_rails: a.kms_rails.map(|r| KmsRailsSource {
                        context: r.context.map(|(k, v)| (k.to_owned(), v.to_owned())),
                    }),
                })
                .collect(),
            encrypts_files: def.attachments,
        })
    }

    pub(crate) fn context(&self, id: &str) -> EncryptionContext {
        EncryptionContext::for_model(&self.model_name, id)
    }
}

/// How [`rotate_table`] rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RotationMode {
    /// Same data key, re-wrapped (no ciphertext changes).
    #[default]
    Rewrap,
    /// A new data key per row, attributes re-encrypted.
    NewDataKey,
}

/// Progress of a table operation, reported after every batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Rows rotated (or backfilled) so far by this run.
    pub done: u64,
    /// Rows that needed it when the run started.
    pub total: u64,
    /// Rows that failed (left as they were).
    pub errors: u64,
    /// Guarded updates that lost to a concurrent writer and were retried.
    pub conflicts: u64,
    /// Time since the start.
    pub elapsed: Duration,
}

impl Progress {
    /// Rows per second so far.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A row that could not be processed.
#[derive(Debug)]
pub struct RowError {
    /// Its id.
    pub id: String,
    /// Why (names the key id and version, never a value).
    pub error: Error,
}

/// The outcome of a table operation.
#[derive(Debug, Default)]
pub struct Summary {
    /// Rows written.
    pub done: u64,
    /// Rows found already done when their turn came (another worker, a concurrent writer).
    pub skipped: u64,
    /// Retried conflicts.
    pub conflicts: u64,
    /// Rows left as they were, with the reason (one per row).
    pub errors: Vec<RowError>,
    /// Rows still not on the current version when the run ended (a rotation: the rows with
    /// errors, rows a `max_batches` run did not reach, rows concurrent writers kept taking
    /// back). `0` means the table is done; anything else means run again.
    pub remaining: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Options of [`rotate_table`] and [`backfill_table`].
pub struct TableOptions<'a> {
    /// Rotation mode (rotation only).
    pub mode: RotationMode,
    /// Rows per batch (default 1000).
    pub batch_size: usize,
    /// KMS calls in flight (default 64).
    pub concurrency: usize,
    /// KMS requests per second, at most (KMS quotas); `None`: unlimited. Counted per request:
    /// a re-wrap that is not native (unwrap + wrap) is two.
    pub rate_per_second: Option<f64>,
    /// Attempts per row when concurrent writers keep changing it (default 5).
    pub max_attempts: usize,
    /// Called after every batch.
    pub progress: Option<&'a mut (dyn FnMut(&Progress) + Send)>,
    /// Stop after this many batches (a bounded slice of work per call, e.g. a cron step).
    pub max_batches: Option<usize>,
    /// The run's first batch holds at most this many rows (default 20); when every one of
    /// them fails with the same kind of error — a version the key spec lacks, a context that
    /// does not match (wrong model name), missing credentials — the run stops with ONE error
    /// saying what to check, instead of failing every row of the table. `0`: never stop.
    pub give_up_after: usize,
}

impl Default for TableOptions<'_> {
    fn default() -> Self {
        Self {
            mode: RotationMode::Rewrap,
            batch_size: 1000,
            concurrency: 64,
            rate_per_second: None,
            max_attempts: 5,
            progress: None,
            max_batches: None,
            give_up_after: 20,
        }
    }
}

impl std::fmt::Debug for TableOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableOptions")
            .field("mode", &self.mode)
            .field("batch_size", &self.batch_size)
            .field("concurrency", &self.concurrency)
            .field("rate_per_second", &self.rate_per_second)
            .field("max_attempts", &self.max_attempts)
            .field("max_batches", &self.max_batches)
            .field("give_up_after", &self.give_up_after)
            .finish_non_exhaustive()
    }
}
