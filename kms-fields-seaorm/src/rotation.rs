//! Rotation and backfill over whole tables, async, on a SeaORM connection — the engine of
//! [`kms_fields::table`] (batches by primary key, guarded updates, bounded concurrency, a KMS
//! request rate limit, resumable runs, several workers at once on Postgres with
//! `FOR UPDATE SKIP LOCKED`).
//!
//! ```no_run
//! # async fn demo(db: &sea_orm::DatabaseConnection, kms: &kms_fields::Kms) -> kms_fields::Result<()> {
//! use kms_fields::KeySpec;
//! use kms_fields_seaorm::rotation::{Progress, TableOptions, TableSpec, rotate_table};
//! let spec = KeySpec::new().key_id("alias/users-2026").version(2).previous_version(1, "alias/users");
//! let table = TableSpec::new("users", "User", "encrypted_kms_key", spec);
//! let mut report = |p: &Progress| eprintln!("{}/{} rows, {:.0}/s", p.done, p.total, p.rate());
//! let summary = rotate_table(db, kms, &table, TableOptions { progress: Some(&mut report), ..Default::default() }).await?;
//! assert!(summary.errors.is_empty());
//! # Ok(()) }
//! ```
//!
//! Dropping the future mid-batch (a timeout, a cancelled task) rolls back the open batch
//! transaction; every row is left old or new, and a new run finishes the job.

use kms_fields::table;
pub use kms_fields::table::{
    AttrSpec, KmsRailsSource, Progress, RotationMode, Row, RowError, Summary, TableOptions,
    TableSpec,
};
use kms_fields::{Kms, Result};
use sea_orm::{ConnectionTrait, TransactionTrait};

use crate::port::sea;

/// Rotate every row of `t.table` whose key column is not at the current version
/// ([`kms_fields::table::rotate_table`] on this connection).
pub async fn rotate_table<C: ConnectionTrait + TransactionTrait + Sync>(
    db: &C,
    kms: &Kms,
    t: &TableSpec,
    opts: TableOptions<'_>,
) -> Result<Summary> {
    table::rotate_table(&mut sea::<C, ()>(db), kms, t, opts).await
}

/// Encrypt existing plaintext columns into the key and ciphertext columns of rows that have no
/// key yet ([`kms_fields::table::backfill_table`] on this connection).
pub async fn backfill_table<C: ConnectionTrait + TransactionTrait + Sync>(
    db: &C,
    kms: &Kms,
    t: &TableSpec,
    sources: &[&str],
    opts: TableOptions<'_>,
) -> Result<Summary> {
    table::backfill_table(&mut sea::<C, ()>(db), kms, t, sources, opts).await
}

/// Move the table's kms_rails values to the per-record format (feature `kms-rails`;
/// [`kms_fields::table::migrate_kms_rails_table`] on this connection). `Summary::remaining ==
/// 0` means finished: remove the attribute's `kms_rails` flag then.
#[cfg(feature = "kms-rails")]
pub async fn migrate_kms_rails_table<C: ConnectionTrait + TransactionTrait + Sync>(
    db: &C,
    kms: &Kms,
    t: &TableSpec,
    opts: TableOptions<'_>,
) -> Result<Summary> {
    table::migrate_kms_rails_table(&mut sea::<C, ()>(db), kms, t, opts).await
}

/// Rows per key version of a key column: `("v1:", n)`, `("NULL", n)`, `("legacy", n)`, and
/// `("malformed", n)` for `vN:` values that are not base64 (unreadable).
pub async fn key_versions<C: ConnectionTrait + TransactionTrait + Sync>(
    db: &C,
    table: &str,
    key_column: &str,
) -> Result<Vec<(String, u64)>> {
    table::key_versions(&mut sea::<C, ()>(db), table, key_column).await
}

/// Fill blind index `bidx` of model `M` for the rows whose index column is NULL
/// ([`kms_fields::table::backfill_blind_index`] on this connection): resumable, guarded.
pub async fn backfill_blind_index<
    M: kms_fields::KmsModel,
    C: ConnectionTrait + TransactionTrait + Sync,
>(
    db: &C,
    kms: &Kms,
    bidx: kms_fields::BidxHandle<M>,
    opts: TableOptions<'_>,
) -> Result<Summary> {
    table::backfill_blind_index::<M, _>(&mut sea::<C, ()>(db), kms, bidx, opts).await
}
