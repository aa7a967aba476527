//! A Diesel connection as the core's ports: [`TableDb`] for the table engine and
//! [`SavePort`] for the save engine. Statements run synchronously inside the async engines,
//! which [`kms_fields::blocking::run`] drives on the calling thread.

use std::marker::PhantomData;

use diesel::Insertable;
use diesel::Table;
use diesel::connection::TransactionManager;
use diesel::query_builder::InsertStatement;
use diesel::query_dsl::methods::ExecuteDsl;
use kms_fields::model::IdKind;
use kms_fields::save::SavePort;
use kms_fields::table::{Row, TableDb};
use kms_fields::{Error, KmsModel, Result};

use crate::connection::{BackendKind, KmsConnection, SqlValue};

/// One record per `INSERT` ([`SavePort::insert_all`] loops).
pub(crate) struct Single;
/// Many records in one `INSERT` (needs `Vec<M>: Insertable`).
pub(crate) struct Batch;

/// A Diesel connection (and, for saves, the Diesel table to insert into).
pub(crate) struct DieselDb<'c, C, T = (), B = Single> {
    conn: &'c mut C,
    table: T,
    _inserts: PhantomData<B>,
}

impl<'c, C> DieselDb<'c, C> {
    pub(crate) fn new(conn: &'c mut C) -> Self {
        Self::with_table(conn, ())
    }
}

impl<'c, C, T, B> DieselDb<'c, C, T, B> {
    pub(crate) fn with_table(conn: &'c mut C, table: T) -> Self {
        Self {
            conn,
            table,
            _inserts: PhantomData,
        }
    }
}

#[async_trait::async_trait]
impl<C: KmsConnection, T: Send, B: Send> TableDb for DieselDb<'_, C, T, B> {
    fn backend(&self) -> BackendKind {
        C::BACKEND
    }
    async fn load_rows(&mut self, sql: &str, binds: Vec<SqlValue>) -> Result<Vec<Row>> {
        self.conn.kms_load_rows(sql, binds).map_err(Error::database)
    }
    async fn load_ids(&mut self, sql: &str, binds: Vec<SqlValue>) -> Result<Vec<String>> {
        self.conn.kms_load_ids(sql, binds).map_err(Error::database)
    }
    async fn execute(&mut self, sql: &str, binds: Vec<SqlValue>) -> Result<usize> {
        self.conn.kms_execute(sql, binds).map_err(Error::database)
    }
    async fn count(&mut self, sql: &str) -> Result<u64> {
        self.conn
            .kms_count(sql)
            .map(|n| n.max(0) as u64)
            .map_err(Error::database)
    }
    async fn group_counts(&mut self, sql: &str) -> Result<Vec<(String, u64)>> {
        self.conn.kms_group_counts(sql).map_err(Error::database)
    }
    async fn begin(&mut self) -> Result<()> {
        C::TransactionManager::begin_transaction(self.conn).map_err(Error::database)
    }
    async fn commit(&mut self) -> Result<()> {
        C::TransactionManager::commit_transaction(self.conn).map_err(Error::database)
    }
    async fn rollback(&mut self) -> Result<()> {
        C::TransactionManager::rollback_transaction(self.conn).map_err(Error::database)
    }
}

/// Diesel's own `insert_into(table).values(row)`; the id SQLite / MySQL assigned, when the
/// row had none (on Postgres the engine took it from the sequence first).
fn insert_row<C, T, M>(conn: &mut C, table: T, row: &M) -> Result<Option<i64>>
where
    C: KmsConnection,
    M: KmsModel + Clone + Insertable<T>,
    T: Table,
    InsertStatement<T, <M as Insertable<T>>::Values>: ExecuteDsl<C>,
{
    // Diesel derives `Insertable` for the owned model too; inserting a clone keeps the bounds
    // free of higher-ranked lifetimes (which overflow the trait solver).
    ExecuteDsl::execute(diesel::insert_into(table).values(row.clone()), conn)
        .map_err(Error::database)?;
    if row.record_id().is_none()
        && M::ID_KIND == IdKind::Integer
        && C::BACKEND != BackendKind::Postgres
    {
        return conn.kms_last_insert_id().map(Some).map_err(Error::database);
    }
    Ok(None)
}

#[async_trait::async_trait]
impl<C, T, M> SavePort<M> for DieselDb<'_, C, T, Single>
where
    C: KmsConnection,
    M: KmsModel + Clone + Insertable<T>,
    T: Table + Copy + Send,
    InsertStatement<T, <M as Insertable<T>>::Values>: ExecuteDsl<C>,
{
    async fn insert_one(&mut self, row: &M) -> Result<Option<i64>> {
        insert_row(self.conn, self.table, row)
    }
    async fn insert_all(&mut self, rows: &[M]) -> Result<()> {
        for row in rows {
            insert_row(self.conn, self.table, row)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl<C, T, M> SavePort<M> for DieselDb<'_, C, T, Batch>
where
    C: KmsConnection,
    M: KmsModel + Clone + Insertable<T>,
    T: Table + Copy + Send,
    Vec<M>: Insertable<T>,
    InsertStatement<T, <M as Insertable<T>>::Values>: ExecuteDsl<C>,
    InsertStatement<T, <Vec<M> as Insertable<T>>::Values>: ExecuteDsl<C>,
{
    async fn insert_one(&mut self, row: &M) -> Result<Option<i64>> {
        insert_row(self.conn, self.table, row)
    }
    async fn insert_all(&mut self, rows: &[M]) -> Result<()> {
        ExecuteDsl::execute(
            diesel::insert_into(self.table).values(rows.to_vec()),
            self.conn,
        )
        .map(drop)
        .map_err(Error::database)
    }
}
