//! A SeaORM connection as the core's ports: [`TableDb`] for the table engine and
//! [`SavePort`] for the save engine. Statements go to the open transaction, if any, so they
//! run on one connection of the pool.

use std::marker::PhantomData;

use kms_fields::save::SavePort;
use kms_fields::sql::{BackendKind, SqlValue};
use kms_fields::table::{Row, TableDb};
use kms_fields::{Error, ErrorKind, KmsModel, Result};
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ConnectionTrait, EntityTrait, IntoActiveModel, Iterable,
    PrimaryKeyToColumn, QueryResult, Statement, TransactionSession, TransactionTrait,
};

use crate::save::{backend, db_err, to_values};

/// A SeaORM connection (or pool) as a [`TableDb`]; statements go to the open transaction, if
/// any, so they run on one connection of the pool.
pub(crate) struct SeaDb<'c, C: TransactionTrait, A = ()> {
    db: &'c C,
    txn: Option<C::Transaction>,
    _active: PhantomData<fn() -> A>,
}

impl<C: ConnectionTrait + TransactionTrait, A> SeaDb<'_, C, A> {
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
impl<C: ConnectionTrait + TransactionTrait + Sync, A> TableDb for SeaDb<'_, C, A> {
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

/// `db` as a port (statements, transactions) — and, with the entity's ActiveModel `A`, a save
/// port.
pub(crate) fn sea<C: TransactionTrait, A>(db: &C) -> SeaDb<'_, C, A> {
    SeaDb {
        db,
        txn: None,
        _active: PhantomData,
    }
}

/// The ActiveModel to insert: every field set, the id left to the database when not assigned.
fn to_active<M, A>(model: &M) -> A
where
    M: KmsModel + IntoActiveModel<A> + Clone,
    A: ActiveModelTrait,
{
    let mut am = model.clone().into_active_model();
    if model.record_id().is_none() {
        for pk in <A::Entity as EntityTrait>::PrimaryKey::iter() {
            am.not_set(pk.into_column());
        }
    }
    am
}

#[async_trait::async_trait]
impl<C, M, A> SavePort<M> for SeaDb<'_, C, A>
where
    C: ConnectionTrait + TransactionTrait + Sync,
    C::Transaction: Sync,
    M: KmsModel + IntoActiveModel<A> + Clone + Send,
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    A::Entity: EntityTrait<Model = M>,
{
    /// SeaORM's `ActiveModel::insert` (the entity's own hooks run); the id from the returned
    /// row (`RETURNING`, or MySQL's `LAST_INSERT_ID()`).
    async fn insert_one(&mut self, row: &M) -> Result<Option<i64>> {
        let am: A = to_active(row);
        let saved: M = match &self.txn {
            Some(t) => am.insert(t).await,
            None => am.insert(self.db).await,
        }
        .map_err(db_err)?;
        if row.record_id().is_some() {
            return Ok(None);
        }
        saved
            .record_id()
            .map(|id| {
                id.parse::<i64>().map_err(|_| {
                    Error::new(
                        ErrorKind::Config,
                        format!("{}: the database id is not an integer", M::MODEL_NAME),
                    )
                })
            })
            .transpose()
    }

    /// SeaORM's `Entity::insert_many` (no hooks run).
    async fn insert_all(&mut self, rows: &[M]) -> Result<()> {
        let rows: Vec<A> = rows.iter().map(|m| m.clone().into_active_model()).collect();
        let q = <A::Entity as EntityTrait>::insert_many(rows);
        match &self.txn {
            Some(t) => q.exec(t).await.map(drop),
            None => q.exec(self.db).await.map(drop),
        }
        .map_err(db_err)
    }
}
