//! Rotation and backfill over whole tables, in primary-key batches, without downtime — the
//! engine of [`kms_fields::table`] on a Diesel connection (see there for how it works: batches
//! by primary key, guarded updates, bounded concurrency, a KMS request rate limit, resumable
//! runs, several workers at once on Postgres with `FOR UPDATE SKIP LOCKED`).
//!
//! ```no_run
//! # fn demo(conn: &mut diesel::PgConnection, kms: &kms_fields::Kms) -> kms_fields::Result<()> {
//! use kms_fields::KeySpec;
//! use kms_fields_diesel::rotation::{Progress, TableOptions, TableSpec, rotate_table};
//! let spec = KeySpec::new().key_id("alias/users-2026").version(2).previous_version(1, "alias/users");
//! let table = TableSpec::new("users", "User", "encrypted_kms_key", spec);
//! let mut report = |p: &Progress| eprintln!("{}/{} rows, {:.0}/s", p.done, p.total, p.rate());
//! let summary = rotate_table(conn, kms, &table, TableOptions { progress: Some(&mut report), ..Default::default() })?;
//! assert!(summary.errors.is_empty());
//! # Ok(()) }
//! ```

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, QueryableByName};
use diesel::row::NamedRow;
use diesel::sql_types::{BigInt, Binary, Nullable, Text};
use kms_fields::table;
pub use kms_fields::table::{
    AttrSpec, KmsRailsSource, Progress, RotationMode, Row, RowError, Summary, TableOptions,
    TableSpec,
};
use kms_fields::{Kms, Result, blocking};

use crate::connection::KmsConnection;
use crate::port::DieselDb;

/// A row loaded by the aliases of [`Row`] (internal; public for [`KmsConnection`]).
#[doc(hidden)]
#[derive(Debug)]
pub struct RowByName(pub Row);

impl<DB: Backend> QueryableByName<DB> for RowByName
where
    String: FromSql<Text, DB>,
    Vec<u8>: FromSql<Binary, DB>,
    i64: FromSql<BigInt, DB>,
{
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
        let id: String = NamedRow::get::<Text, String>(row, "kmsf_id")?;
        let key = NamedRow::get::<Nullable<Text>, Option<String>>(row, "kmsf_key")?;
        let n = NamedRow::get::<BigInt, i64>(row, "kmsf_n")?;
        let mut cols = Vec::with_capacity(n.max(0) as usize);
        for i in 0..n {
            let v =
                match NamedRow::get::<Nullable<Text>, Option<String>>(row, &format!("kmsf_t{i}")) {
                    Ok(t) => t.map(String::into_bytes),
                    Err(_) => NamedRow::get::<Nullable<Binary>, Option<Vec<u8>>>(
                        row,
                        &format!("kmsf_b{i}"),
                    )?,
                };
            cols.push(v);
        }
        Ok(RowByName(Row { id, key, cols }))
    }
}

/// Rotate every row of `t.table` whose key column is not at the current version
/// ([`kms_fields::table::rotate_table`] on this connection).
pub fn rotate_table<C: KmsConnection>(
    conn: &mut C,
    kms: &Kms,
    t: &TableSpec,
    opts: TableOptions<'_>,
) -> Result<Summary> {
    blocking::run(table::rotate_table(&mut DieselDb::new(conn), kms, t, opts))
}

/// Encrypt existing plaintext columns into the key and ciphertext columns of rows that have no
/// key yet ([`kms_fields::table::backfill_table`] on this connection).
pub fn backfill_table<C: KmsConnection>(
    conn: &mut C,
    kms: &Kms,
    t: &TableSpec,
    sources: &[&str],
    opts: TableOptions<'_>,
) -> Result<Summary> {
    blocking::run(table::backfill_table(
        &mut DieselDb::new(conn),
        kms,
        t,
        sources,
        opts,
    ))
}

/// Move the table's kms_rails values to the per-record format (feature `kms-rails`;
/// [`kms_fields::table::migrate_kms_rails_table`] on this connection). `Summary::remaining ==
/// 0` means finished: remove the attribute's `kms_rails` flag then.
#[cfg(feature = "kms-rails")]
pub fn migrate_kms_rails_table<C: KmsConnection>(
    conn: &mut C,
    kms: &Kms,
    t: &TableSpec,
    opts: TableOptions<'_>,
) -> Result<Summary> {
    blocking::run(table::migrate_kms_rails_table(
        &mut DieselDb::new(conn),
        kms,
        t,
        opts,
    ))
}

/// Rows per key version of a key column: `("v1:", n)`, `("NULL", n)`, `("legacy", n)`, and
/// `("malformed", n)` for `vN:` values that are not base64 (unreadable).
pub fn key_versions<C: KmsConnection>(
    conn: &mut C,
    table: &str,
    key_column: &str,
) -> Result<Vec<(String, u64)>> {
    blocking::run(table::key_versions(
        &mut DieselDb::new(conn),
        table,
        key_column,
    ))
}

/// Fill blind index `bidx` of model `M` for the rows whose index column is NULL
/// ([`kms_fields::table::backfill_blind_index`] on this connection): resumable, guarded.
pub fn backfill_blind_index<M: kms_fields::KmsModel, C: KmsConnection>(
    conn: &mut C,
    kms: &Kms,
    bidx: kms_fields::BidxHandle<M>,
    opts: TableOptions<'_>,
) -> Result<Summary> {
    blocking::run(table::backfill_blind_index::<M, _>(
        &mut DieselDb::new(conn),
        kms,
        bidx,
        opts,
    ))
}
