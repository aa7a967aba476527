//! The same operations for `diesel-async` on Postgres (feature `async-postgres`): `await`
//! instead of blocking, for applications whose request handlers are async. The save engine
//! ([`kms_fields::save`]) and the table engine ([`kms_fields::table`]) run over the
//! connection's port, exactly as for sync Diesel.
//!
//! ```no_run
//! # async fn demo<M>(conn: &mut diesel_async::AsyncPgConnection, kms: &kms_fields::Kms, user: &mut M) -> kms_fields::Result<()>
//! # where M: kms_fields::KmsModel + Clone + diesel::Insertable<users::table> + Send,
//! #       diesel::query_builder::InsertStatement<users::table, <M as diesel::Insertable<users::table>>::Values>:
//! #           diesel_async::methods::ExecuteDsl<diesel_async::AsyncPgConnection> + Send,
//! # {
//! kms_fields_diesel::async_pg::insert(conn, kms, users::table, user).await?;
//! # Ok(()) }
//! # diesel::table! { users (id) { id -> Integer, } }
//! ```

use std::marker::PhantomData;

use diesel::Insertable;
use diesel::Table;
use diesel::pg::Pg;
use diesel::query_builder::InsertStatement;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, TransactionManager};
use kms_fields::save::{self, SavePort};
use kms_fields::table::{self, Row, Summary, TableDb, TableOptions, TableSpec};
use kms_fields::{Error, Kms, KmsModel, Result, SaveFlow};

use crate::connection::{BackendKind, CountRow, GroupRow, IdText, SqlValue, bound};
use crate::port::{Batch, Single};
use crate::rotation::RowByName;

/// An `AsyncPgConnection` as the engines' port (and, for inserts, the table).
struct AsyncDb<'c, T = (), B = Single> {
    conn: &'c mut AsyncPgConnection,
    table: T,
    _inserts: PhantomData<B>,
}

impl<'c, T, B> AsyncDb<'c, T, B> {
    fn new(conn: &'c mut AsyncPgConnection, table: T) -> Self {
        Self {
            conn,
            table,
            _inserts: PhantomData,
        }
    }
}

#[async_trait::async_trait]
impl<T: Send, B: Send> TableDb for AsyncDb<'_, T, B> {
    fn backend(&self) -> BackendKind {
        BackendKind::Postgres
    }
    async fn load_rows(&mut self, sql: &str, binds: Vec<SqlValue>) -> Result<Vec<Row>> {
        let rows: Vec<RowByName> = bound::<Pg>(sql, binds)
            .load(self.conn)
            .await
            .map_err(Error::database)?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }
    async fn load_ids(&mut self, sql: &str, binds: Vec<SqlValue>) -> Result<Vec<String>> {
        let rows: Vec<IdText> = bound::<Pg>(sql, binds)
            .load(self.conn)
            .await
            .map_err(Error::database)?;
        Ok(rows.into_iter().map(|r| r.kmsf_id).collect())
    }
    async fn execute(&mut self, sql: &str, binds: Vec<SqlValue>) -> Result<usize> {
        bound::<Pg>(sql, binds)
            .execute(self.conn)
            .await
            .map_err(Error::database)
    }
    async fn count(&mut self, sql: &str) -> Result<u64> {
        let row: CountRow = diesel::sql_query(sql.to_owned())
            .get_result(self.conn)
            .await
            .map_err(Error::database)?;
        Ok(row.n.max(0) as u64)
    }
    async fn group_counts(&mut self, sql: &str) -> Result<Vec<(String, u64)>> {
        let rows: Vec<GroupRow> = diesel::sql_query(sql.to_owned())
            .load(self.conn)
            .await
            .map_err(Error::database)?;
        Ok(rows
            .into_iter()
            .map(|r| (r.kmsf_version, r.n.max(0) as u64))
            .collect())
    }
    async fn begin(&mut self) -> Result<()> {
        <AsyncPgConnection as AsyncConnection>::TransactionManager::begin_transaction(self.conn)
            .await
            .map_err(Error::database)
    }
    async fn commit(&mut self) -> Result<()> {
        <AsyncPgConnection as AsyncConnection>::TransactionManager::commit_transaction(self.conn)
            .await
            .map_err(Error::database)
    }
    async fn rollback(&mut self) -> Result<()> {
        <AsyncPgConnection as AsyncConnection>::TransactionManager::rollback_transaction(self.conn)
            .await
            .map_err(Error::database)
    }
}

#[async_trait::async_trait]
impl<T, M> SavePort<M> for AsyncDb<'_, T, Single>
where
    M: KmsModel + Clone + Insertable<T>,
    T: Table + Copy + Send + Sync,
    InsertStatement<T, <M as Insertable<T>>::Values>:
        diesel_async::methods::ExecuteDsl<AsyncPgConnection> + Send,
{
    async fn insert_one(&mut self, row: &M) -> Result<Option<i64>> {
        // Postgres: a database-assigned id was taken from the sequence before the INSERT
        diesel::insert_into(self.table)
            .values(row.clone())
            .execute(self.conn)
            .await
            .map_err(Error::database)?;
        Ok(None)
    }
    async fn insert_all(&mut self, rows: &[M]) -> Result<()> {
        for row in rows {
            self.insert_one(row).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl<T, M> SavePort<M> for AsyncDb<'_, T, Batch>
where
    M: KmsModel + Clone + Insertable<T>,
    T: Table + Copy + Send + Sync,
    Vec<M>: Insertable<T>,
    InsertStatement<T, <M as Insertable<T>>::Values>:
        diesel_async::methods::ExecuteDsl<AsyncPgConnection> + Send,
    InsertStatement<T, <Vec<M> as Insertable<T>>::Values>:
        diesel_async::methods::ExecuteDsl<AsyncPgConnection> + Send,
{
    async fn insert_one(&mut self, row: &M) -> Result<Option<i64>> {
        diesel::insert_into(self.table)
            .values(row.clone())
            .execute(self.conn)
            .await
            .map_err(Error::database)?;
        Ok(None)
    }
    async fn insert_all(&mut self, rows: &[M]) -> Result<()> {
        diesel::insert_into(self.table)
            .values(rows.to_vec())
            .execute(self.conn)
            .await
            .map(drop)
            .map_err(Error::database)
    }
}

/// [`crate::insert`] for `AsyncPgConnection`.
pub async fn insert<T, M>(
    conn: &mut AsyncPgConnection,
    kms: &Kms,
    table: T,
    model: &mut M,
) -> Result<SaveFlow>
where
    M: KmsModel + Clone + Insertable<T> + Send,
    T: Table + Copy + Send + Sync,
    InsertStatement<T, <M as Insertable<T>>::Values>:
        diesel_async::methods::ExecuteDsl<AsyncPgConnection> + Send,
{
    save::insert(&mut AsyncDb::<T, Single>::new(conn, table), kms, model).await
}

/// [`crate::insert_many`] for `AsyncPgConnection`: ONE `nextval` query for the ids, the wraps
/// concurrently (at most `concurrency` KMS calls), ONE multi-row `INSERT`. All or nothing.
pub async fn insert_many<T, M>(
    conn: &mut AsyncPgConnection,
    kms: &Kms,
    table: T,
    records: &mut [M],
    concurrency: usize,
) -> Result<SaveFlow>
where
    M: KmsModel + Clone + Insertable<T> + Send,
    T: Table + Copy + Send + Sync,
    Vec<M>: Insertable<T>,
    InsertStatement<T, <M as Insertable<T>>::Values>:
        diesel_async::methods::ExecuteDsl<AsyncPgConnection> + Send,
    InsertStatement<T, <Vec<M> as Insertable<T>>::Values>:
        diesel_async::methods::ExecuteDsl<AsyncPgConnection> + Send,
{
    save::insert_many(
        &mut AsyncDb::<T, Batch>::new(conn, table),
        kms,
        records,
        concurrency,
    )
    .await
}

/// [`crate::update_encrypted`] for `AsyncPgConnection`.
pub async fn update_encrypted<M: KmsModel>(
    conn: &mut AsyncPgConnection,
    kms: &Kms,
    model: &mut M,
) -> Result<()> {
    save::update_encrypted(&mut AsyncDb::<(), Single>::new(conn, ()), kms, model).await
}

/// [`crate::rotate_kms_key`] for `AsyncPgConnection`.
pub async fn rotate_kms_key<M: KmsModel>(
    conn: &mut AsyncPgConnection,
    kms: &Kms,
    model: &mut M,
    key: kms_fields::KeyHandle<M>,
) -> Result<()> {
    save::rotate_kms_key(&mut AsyncDb::<(), Single>::new(conn, ()), kms, model, key).await
}

/// [`crate::rewrap_kms_key`] for `AsyncPgConnection`.
pub async fn rewrap_kms_key<M: KmsModel>(
    conn: &mut AsyncPgConnection,
    kms: &Kms,
    model: &mut M,
    key: kms_fields::KeyHandle<M>,
) -> Result<bool> {
    save::rewrap_kms_key(&mut AsyncDb::<(), Single>::new(conn, ()), kms, model, key).await
}

/// [`crate::rotation::rotate_table`] for `AsyncPgConnection`.
pub async fn rotate_table(
    conn: &mut AsyncPgConnection,
    kms: &Kms,
    t: &TableSpec,
    opts: TableOptions<'_>,
) -> Result<Summary> {
    table::rotate_table(&mut AsyncDb::<(), Single>::new(conn, ()), kms, t, opts).await
}

/// [`crate::rotation::backfill_table`] for `AsyncPgConnection`.
pub async fn backfill_table(
    conn: &mut AsyncPgConnection,
    kms: &Kms,
    t: &TableSpec,
    sources: &[&str],
    opts: TableOptions<'_>,
) -> Result<Summary> {
    table::backfill_table(
        &mut AsyncDb::<(), Single>::new(conn, ()),
        kms,
        t,
        sources,
        opts,
    )
    .await
}

/// [`crate::rotation::backfill_blind_index`] for `AsyncPgConnection`.
pub async fn backfill_blind_index<M: KmsModel>(
    conn: &mut AsyncPgConnection,
    kms: &Kms,
    bidx: kms_fields::BidxHandle<M>,
    opts: TableOptions<'_>,
) -> Result<Summary> {
    table::backfill_blind_index::<M, _>(&mut AsyncDb::<(), Single>::new(conn, ()), kms, bidx, opts)
        .await
}

/// [`crate::rotation::key_versions`] for `AsyncPgConnection`.
pub async fn key_versions(
    conn: &mut AsyncPgConnection,
    table: &str,
    key_column: &str,
) -> Result<Vec<(String, u64)>> {
    table::key_versions(&mut AsyncDb::<(), Single>::new(conn, ()), table, key_column).await
}
