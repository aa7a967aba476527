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

use kms_fields::table::{self, TableDb};
pub use kms_fields::table::{
    AttrSpec, Progress, RotationMode, Row, RowError, Summary, TableOptions, TableSpec,
};
use kms_fields::{Kms, Result};
use sea_orm::{ConnectionTrait, QueryResult, Statement, TransactionSession, TransactionTrait};

use crate::save::{backend, db_err, to_values};
use kms_fields::sql::{BackendKind, SqlValue};

/// A SeaORM connection (or pool) as a [`TableDb`]; statements go to the open transaction, if
/// any, so they run on one connection of the pool.
struct SeaDb<'c, C: TransactionTrait> {
    db: &'c C,
    txn: Option<C::Transaction>,
}

impl<C: ConnectionTrait + TransactionTrait> SeaDb<'_, C> {
    fn statement(&self, sql: &str, binds: Vec<SqlValue>) -> Statement {
        Statement::from_sql_and_values(self.db.get_database_backend(), sql, to_values(binds))
    }

    async fn query(&self, s: Statement) -> Result<Vec<QueryResult>> {
        match &self.txn {
            Some(t) => t.query_all_raw(s).await,
            None => self.db.query_all_raw(s).await,
        }
        .map_err(db_err)
    }
}

fn row(r: &QueryResult) -> Result<Row> {
    let id: String = r.try_get("", "kmsf_id").map_err(db_err)?;
    let key: Option<String> = r.try_get("", "kmsf_key").map_err(db_err)?;
    let n: i64 = r.try_get("", "kmsf_n").map_err(db_err)?;
    let mut cols = Vec::with_capacity(n.max(0) as usize);
    for i in 0..n {
        cols.push(
            match r.try_get::<Option<String>>("", &format!("kmsf_t{i}")) {
                Ok(t) => t.map(String::into_bytes),
                Err(_) => r
                    .try_get::<Option<Vec<u8>>>("", &format!("kmsf_b{i}"))
                    .map_err(db_err)?,
            },
        );
    }
    Ok(Row { id, key, cols })
}

#[async_trait::async_trait]
impl<C: ConnectionTrait + TransactionTrait + Sync> TableDb for SeaDb<'_, C> {
    fn backend(&self) -> BackendKind {
        backend(self.db)
    }
    async fn load_rows(&mut self, sql: &str, binds: Vec<SqlValue>) -> Result<Vec<Row>> {
        let s = self.statement(sql, binds);
        self.query(s).await?.iter().map(row).collect()
    }
    async fn load_ids(&mut self, sql: &str, binds: Vec<SqlValue>) -> Result<Vec<String>> {
        let s = self.statement(sql, binds);
        self.query(s)
            .await?
            .iter()
            .map(|r| r.try_get::<String>("", "kmsf_id").map_err(db_err))
            .collect()
    }
    async fn execute(&mut self, sql: &str, binds: Vec<SqlValue>) -> Result<usize> {
        let s = self.statement(sql, binds);
        match &self.txn {
            Some(t) => t.execute_raw(s).await,
            None => self.db.execute_raw(s).await,
        }
        .map(|r| r.rows_affected() as usize)
        .map_err(db_err)
    }
    async fn count(&mut self, sql: &str) -> Result<u64> {
        let rows = self.query(self.statement(sql, Vec::new())).await?;
        let n: i64 = match rows.first() {
            Some(r) => r.try_get("", "n").map_err(db_err)?,
            None => 0,
        };
        Ok(n.max(0) as u64)
    }
    async fn group_counts(&mut self, sql: &str) -> Result<Vec<(String, u64)>> {
        let rows = self.query(self.statement(sql, Vec::new())).await?;
        rows.iter()
            .map(|r| {
                let v: String = r.try_get("", "kmsf_version").map_err(db_err)?;
                let n: i64 = r.try_get("", "n").map_err(db_err)?;
                Ok((v, n.max(0) as u64))
            })
            .collect()
    }
    async fn begin(&mut self) -> Result<()> {
        self.txn = Some(self.db.begin().await.map_err(db_err)?);
        Ok(())
    }
    async fn commit(&mut self) -> Result<()> {
        match self.txn.take() {
            Some(t) => t.commit().await.map_err(db_err),
            None => Ok(()),
        }
    }
    async fn rollback(&mut self) -> Result<()> {
        match self.txn.take() {
            Some(t) => t.rollback().await.map_err(db_err),
            None => Ok(()),
        }
    }
}

fn sea<C: TransactionTrait>(db: &C) -> SeaDb<'_, C> {
    SeaDb { db, txn: None }
}

/// Rotate every row of `t.table` whose key column is not at the current version
/// ([`kms_fields::table::rotate_table`] on this connection).
pub async fn rotate_table<C: ConnectionTrait + TransactionTrait + Sync>(
    db: &C,
    kms: &Kms,
    t: &TableSpec,
    opts: TableOptions<'_>,
) -> Result<Summary> {
    table::rotate_table(&mut sea(db), kms, t, opts).await
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
    table::backfill_table(&mut sea(db), kms, t, sources, opts).await
}

/// Rows per key version of a key column: `("v1:", n)`, `("NULL", n)`, `("legacy", n)`.
pub async fn key_versions<C: ConnectionTrait + TransactionTrait + Sync>(
    db: &C,
    table: &str,
    key_column: &str,
) -> Result<Vec<(String, u64)>> {
    table::key_versions(&mut sea(db), table, key_column).await
}

/// Fill blind index `bidx` of model `M` for the rows whose index column is NULL
/// ([`kms_fields::table::backfill_blind_index`] on this connection): resumable, guarded.
pub async fn backfill_blind_index<
    M: kms_fields::KmsModel,
    C: ConnectionTrait + TransactionTrait + Sync,
>(
    db: &C,
    kms: &Kms,
    bidx: usize,
    opts: TableOptions<'_>,
) -> Result<Summary> {
    table::backfill_blind_index::<M, _>(&mut sea(db), kms, bidx, opts).await
}
