//! The same flows for `diesel-async` on Postgres (feature `async-postgres`): `await` instead of
//! blocking, for applications whose request handlers are async.
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

use diesel::Insertable;
use diesel::Table;
use diesel::pg::Pg;
use diesel::query_builder::InsertStatement;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use kms_fields::model::{self, IdKind};
use kms_fields::{Error, Kms, KmsModel, Result, SaveFlow};

use crate::connection::{BackendKind, IdRow, SqlValue};
use crate::flow;
use crate::flow::TxError;
use kms_fields::sql;

async fn execute(
    conn: &mut AsyncPgConnection,
    stmt: &str,
    binds: Vec<SqlValue>,
) -> diesel::QueryResult<usize> {
    crate::connection::bound::<Pg>(stmt, binds)
        .execute(conn)
        .await
}

async fn next_id<M: KmsModel>(conn: &mut AsyncPgConnection) -> Result<i64> {
    use diesel::sql_types::Text;
    let table = sql::table::<M>()?;
    let row: IdRow = match M::SEQUENCE {
        Some(seq) => {
            diesel::sql_query("SELECT nextval($1::regclass) AS id")
                .bind::<Text, _>(seq)
                .get_result(conn)
                .await
        }
        None => {
            diesel::sql_query("SELECT nextval(pg_get_serial_sequence($1, $2)) AS id")
                .bind::<Text, _>(table)
                .bind::<Text, _>(M::ID_COLUMN)
                .get_result(conn)
                .await
        }
    }
    .map_err(Error::database)?;
    Ok(row.id)
}

async fn last_insert_id(conn: &mut AsyncPgConnection) -> diesel::QueryResult<i64> {
    let row: IdRow = diesel::sql_query("SELECT lastval() AS id")
        .get_result(conn)
        .await?;
    Ok(row.id)
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
    let flow = flow::plan(BackendKind::Postgres, model)?;
    let had_id = model.record_id().is_some();
    let snapshot = flow::key_snapshot(model);
    match run_insert(conn, kms, table, model, flow).await {
        Ok(()) => {
            flow::mark_saved(model);
            Ok(flow)
        }
        Err(e) => {
            flow::restore(model, snapshot, had_id);
            Err(e)
        }
    }
}

async fn run_insert<T, M>(
    conn: &mut AsyncPgConnection,
    kms: &Kms,
    table: T,
    model: &mut M,
    flow: SaveFlow,
) -> Result<()>
where
    M: KmsModel + Clone + Insertable<T> + Send,
    T: Table + Copy + Send + Sync,
    InsertStatement<T, <M as Insertable<T>>::Values>:
        diesel_async::methods::ExecuteDsl<AsyncPgConnection> + Send,
{
    let pending = flow::any_pending(model);
    match flow {
        SaveFlow::AfterInsert if pending => {
            let row = model.clone();
            // the INSERT and the key UPDATE in one transaction; the wrap between them
            conn.transaction::<_, TxError, _>(async |conn| {
                diesel::insert_into(table).values(row).execute(conn).await?;
                if model.record_id().is_none() && M::ID_KIND == IdKind::Integer {
                    let id = last_insert_id(conn).await?;
                    model.set_record_id(id).map_err(TxError::Kms)?;
                }
                model::seal_pending_keys(model, kms)
                    .await
                    .map_err(TxError::Kms)?;
                let (stmt, binds) =
                    sql::key_columns(BackendKind::Postgres, &*model).map_err(TxError::Kms)?;
                execute(conn, &stmt, binds).await?;
                Ok(())
            })
            .await
            .map_err(Error::from)
        }
        _ => {
            if flow == SaveFlow::Prefetch && pending {
                let id = next_id::<M>(conn).await?;
                model.set_record_id(id)?;
            }
            model::seal_pending_keys(model, kms).await?;
            diesel::insert_into(table)
                .values(model.clone())
                .execute(conn)
                .await
                .map_err(Error::database)?;
            if model.record_id().is_none()
                && M::ID_KIND == IdKind::Integer
                && let Ok(id) = last_insert_id(conn).await
            {
                let _ = model.set_record_id(id);
            }
            Ok(())
        }
    }
}

/// [`crate::update_encrypted`] for `AsyncPgConnection`.
pub async fn update_encrypted<M: KmsModel>(
    conn: &mut AsyncPgConnection,
    kms: &Kms,
    model: &mut M,
) -> Result<usize> {
    let snapshot = flow::key_snapshot(model);
    let result = async {
        model::seal_pending_keys(model, kms).await?;
        let (stmt, binds) = sql::encrypted_columns(BackendKind::Postgres, &*model)?;
        execute(conn, &stmt, binds).await.map_err(Error::database)
    }
    .await;
    match result {
        Ok(n) => {
            flow::mark_saved(model);
            Ok(n)
        }
        Err(e) => {
            flow::restore(model, snapshot, true);
            Err(e)
        }
    }
}

async fn guarded_update<M: KmsModel>(
    conn: &mut AsyncPgConnection,
    model: &mut M,
    key: usize,
) -> Result<()> {
    let (stmt, binds) = sql::one_key_guarded(BackendKind::Postgres, &*model, key)?;
    if execute(conn, &stmt, binds).await.map_err(Error::database)? == 0 {
        return Err(sql::conflict::<M>(key));
    }
    model.key_column_mut(key).mark_saved();
    Ok(())
}

/// [`crate::rotate_kms_key`] for `AsyncPgConnection`.
pub async fn rotate_kms_key<M: KmsModel>(
    conn: &mut AsyncPgConnection,
    kms: &Kms,
    model: &mut M,
    key: usize,
) -> Result<()> {
    model::rotate_key(model, kms, key).await?;
    model::seal_pending_keys(model, kms).await?;
    guarded_update(conn, model, key).await
}

/// [`crate::rewrap_kms_key`] for `AsyncPgConnection`.
pub async fn rewrap_kms_key<M: KmsModel>(
    conn: &mut AsyncPgConnection,
    kms: &Kms,
    model: &mut M,
    key: usize,
) -> Result<bool> {
    if !model::rewrap_key(model, kms, key).await? {
        return Ok(false);
    }
    guarded_update(conn, model, key).await?;
    Ok(true)
}
