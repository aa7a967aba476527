//! The save flows of DESIGN §4 over Diesel, plus the key-column and rotation updates.

use diesel::Insertable;
use diesel::Table;
use diesel::query_builder::InsertStatement;
use diesel::query_dsl::methods::ExecuteDsl;
use kms_fields::model::{self, IdKind};
use kms_fields::{Error, ErrorKind, Kms, KmsModel, Result, SaveFlow, blocking};

use crate::connection::KmsConnection;
use crate::flow::{self, TxError};
use kms_fields::sql;

/// The flow [`insert`] will use for `model` on connection type `C`:
///
/// - the model's `save_flow` if it is not `auto`;
/// - `Eager` when the record already has its id, or every key has a custom context;
/// - `Prefetch` on Postgres for an integer id;
/// - `AfterInsert` otherwise (SQLite, MySQL).
pub fn planned_flow<M: KmsModel, C: KmsConnection>(model: &M) -> Result<SaveFlow> {
    flow::plan(C::BACKEND, model)
}

/// Insert a new record, wrapping its new data keys with the flow [`planned_flow`] picks:
///
/// - `Prefetch` (Postgres default): one `nextval` query, the keys wrapped with the id in the
///   context, then ONE `INSERT` — no KMS call inside a database transaction;
/// - `Eager`: wrap, then `INSERT`;
/// - `AfterInsert` (SQLite/MySQL default): in one transaction, `INSERT`, read the new id, wrap,
///   `UPDATE` the key columns (and `updated_at`) — kms_encrypted's flow.
///
/// `table` is the Diesel table (`users::table`) and `M` must be `Insertable` into it; an id
/// the database assigns is an `Option<_>` field left `None`. On error nothing is written and the
/// model's keys are as before, so the call can be retried. Returns the flow used.
pub fn insert<T, M, C>(conn: &mut C, kms: &Kms, table: T, model: &mut M) -> Result<SaveFlow>
where
    C: KmsConnection,
    M: KmsModel + Clone + Insertable<T>,
    T: Table + Copy,
    InsertStatement<T, <M as Insertable<T>>::Values>: ExecuteDsl<C>,
{
    let flow = flow::plan(C::BACKEND, model)?;
    tracing::debug!(target: "kms_fields::save", model = M::MODEL_NAME, flow = ?flow, "insert");
    let had_id = model.record_id().is_some();
    let snapshot = flow::key_snapshot(model);
    let result = run_insert::<T, M, C>(conn, kms, table, model, flow);
    match result {
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

fn run_insert<T, M, C>(
    conn: &mut C,
    kms: &Kms,
    table: T,
    model: &mut M,
    flow: SaveFlow,
) -> Result<()>
where
    C: KmsConnection,
    M: KmsModel + Clone + Insertable<T>,
    T: Table + Copy,
    InsertStatement<T, <M as Insertable<T>>::Values>: ExecuteDsl<C>,
{
    // Diesel derives `Insertable` for the owned model too; inserting a clone keeps the bounds
    // free of higher-ranked lifetimes (which overflow the trait solver).
    let insert_row = |conn: &mut C, model: &M| -> diesel::QueryResult<usize> {
        ExecuteDsl::execute(diesel::insert_into(table).values(model.clone()), conn)
    };
    let pending = flow::any_pending(model);
    match flow {
        SaveFlow::Prefetch if pending => {
            let ids = conn
                .kms_next_ids(sql::table::<M>()?, M::ID_COLUMN, M::SEQUENCE, 1)
                .map_err(Error::database)?;
            let id = ids
                .first()
                .copied()
                .ok_or_else(|| Error::new(ErrorKind::Database, "nextval returned no id"))?;
            model.set_record_id(id)?;
            blocking::run(model::seal_pending_keys(model, kms))?;
            insert_row(conn, model).map_err(Error::database)?;
        }
        SaveFlow::Eager | SaveFlow::Prefetch | SaveFlow::Auto => {
            blocking::run(model::seal_pending_keys(model, kms))?;
            insert_row(conn, model).map_err(Error::database)?;
            learn_id(conn, model);
        }
        SaveFlow::AfterInsert => {
            conn.transaction::<_, TxError, _>(|conn| {
                insert_row(conn, model)?;
                if model.record_id().is_none() && M::ID_KIND == IdKind::Integer {
                    let id = conn.kms_last_insert_id()?;
                    model.set_record_id(id).map_err(TxError::Kms)?;
                }
                if !pending {
                    return Ok(());
                }
                blocking::run(model::seal_pending_keys(model, kms)).map_err(TxError::Kms)?;
                let (stmt, binds) = sql::key_columns(C::BACKEND, &*model).map_err(TxError::Kms)?;
                conn.kms_execute(&stmt, binds)?;
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// Give a database-assigned integer id back to the model (best effort: a table without an
/// auto-increment id simply keeps `None`).
fn learn_id<M: KmsModel, C: KmsConnection>(conn: &mut C, model: &mut M) {
    if model.record_id().is_none()
        && M::ID_KIND == IdKind::Integer
        && let Ok(id) = conn.kms_last_insert_id()
    {
        let _ = model.set_record_id(id);
    }
}

/// Write the record's encrypted state: wrap any new data key (one KMS `Encrypt` each, never a
/// `Decrypt`), then ONE `UPDATE` of its key columns and ciphertext columns. Other columns are
/// left to your own Diesel update. Returns the number of rows updated (0 or 1).
pub fn update_encrypted<M, C>(conn: &mut C, kms: &Kms, model: &mut M) -> Result<usize>
where
    C: KmsConnection,
    M: KmsModel,
{
    sql::table::<M>()?;
    let snapshot = flow::key_snapshot(model);
    let result = (|| {
        blocking::run(model::seal_pending_keys(model, kms))?;
        let (stmt, binds) = sql::encrypted_columns(C::BACKEND, &*model)?;
        conn.kms_execute(&stmt, binds).map_err(Error::database)
    })();
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

/// Write key `key`'s columns (its key column and its attributes' ciphertexts) with ONE guarded
/// `UPDATE … WHERE id = ? AND <key column> = <value when loaded>`. Returns `Conflict` when a
/// concurrent writer changed the row first (nothing is overwritten).
pub fn update_key_columns<M, C>(conn: &mut C, model: &mut M, key: usize) -> Result<()>
where
    C: KmsConnection,
    M: KmsModel,
{
    let (stmt, binds) = sql::one_key_guarded(C::BACKEND, &*model, key)?;
    if conn.kms_execute(&stmt, binds).map_err(Error::database)? == 0 {
        return Err(sql::conflict::<M>(key));
    }
    model.key_column_mut(key).mark_saved();
    Ok(())
}

/// kms_encrypted's `rotate_kms_key!` for key `key` (index in `M::KEYS`): decrypt its
/// attributes (one `Decrypt`), draw a new data key, re-encrypt them, wrap the key (one
/// `Encrypt`), and save with one guarded `UPDATE` of that key's columns.
pub fn rotate_kms_key<M, C>(conn: &mut C, kms: &Kms, model: &mut M, key: usize) -> Result<()>
where
    C: KmsConnection,
    M: KmsModel,
{
    blocking::run(async {
        model::rotate_key(model, kms, key).await?;
        model::seal_pending_keys(model, kms).await
    })?;
    update_key_columns(conn, model, key)
}

/// Re-wrap key `key` (same data key, current version/key id/context; AWS ReEncrypt when
/// possible) and save with one guarded `UPDATE`. Ciphertexts are untouched. Returns `false`
/// when there was nothing to do.
pub fn rewrap_kms_key<M, C>(conn: &mut C, kms: &Kms, model: &mut M, key: usize) -> Result<bool>
where
    C: KmsConnection,
    M: KmsModel,
{
    if !blocking::run(model::rewrap_key(model, kms, key))? {
        return Ok(false);
    }
    update_key_columns(conn, model, key)?;
    Ok(true)
}

/// Key index by name: `None` or `"kms_key"` for the default key, `"phone"` or
/// `"kms_key_phone"` for a named one.
pub fn key_index<M: KmsModel>(name: Option<&str>) -> Result<usize> {
    let method = match name {
        None | Some("kms_key") => "kms_key".to_owned(),
        Some(n) => format!("kms_key_{}", n.trim_start_matches("kms_key_")),
    };
    M::KEYS
        .iter()
        .position(|k| k.method == method)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("{} has no key {method}", M::MODEL_NAME),
            )
        })
}

/// Insert many new records: their data keys are wrapped concurrently (at most `concurrency` KMS
/// calls in flight), then
///
/// - Postgres (`Prefetch`): ONE `nextval` query for all the ids (`generate_series`), the keys
///   wrapped with their ids, ONE multi-row `INSERT`;
/// - records whose ids are known or whose contexts need none (`Eager`): wrap, ONE multi-row
///   `INSERT`;
/// - SQLite / MySQL (`AfterInsert`): one transaction { an `INSERT` per record for its id, the
///   wraps, an `UPDATE` of each record's key columns }.
///
/// All or nothing: on error no row is written and every record's keys are as before.
pub fn insert_many<T, M, C>(
    conn: &mut C,
    kms: &Kms,
    table: T,
    records: &mut [M],
    concurrency: usize,
) -> Result<SaveFlow>
where
    C: KmsConnection,
    M: KmsModel + Clone + Insertable<T>,
    T: Table + Copy,
    Vec<M>: Insertable<T>,
    InsertStatement<T, <M as Insertable<T>>::Values>: ExecuteDsl<C>,
    InsertStatement<T, <Vec<M> as Insertable<T>>::Values>: ExecuteDsl<C>,
{
    let Some(first) = records.first() else {
        return Ok(SaveFlow::Eager);
    };
    let flow = flow::plan(C::BACKEND, first)?;
    let snapshots: Vec<_> = records
        .iter()
        .map(|m| (flow::key_snapshot(m), m.record_id().is_some()))
        .collect();
    let result = run_insert_many(conn, kms, table, records, flow, concurrency);
    match result {
        Ok(()) => {
            records.iter_mut().for_each(flow::mark_saved);
            Ok(flow)
        }
        Err(e) => {
            for (m, (snap, had_id)) in records.iter_mut().zip(snapshots) {
                flow::restore(m, snap, had_id);
            }
            Err(e)
        }
    }
}

fn first_error(results: Vec<Result<usize>>) -> Result<()> {
    results
        .into_iter()
        .find_map(|r| r.err())
        .map_or(Ok(()), Err)
}

fn run_insert_many<T, M, C>(
    conn: &mut C,
    kms: &Kms,
    table: T,
    records: &mut [M],
    flow: SaveFlow,
    concurrency: usize,
) -> Result<()>
where
    C: KmsConnection,
    M: KmsModel + Clone + Insertable<T>,
    T: Table + Copy,
    Vec<M>: Insertable<T>,
    InsertStatement<T, <M as Insertable<T>>::Values>: ExecuteDsl<C>,
    InsertStatement<T, <Vec<M> as Insertable<T>>::Values>: ExecuteDsl<C>,
{
    let insert_all = |conn: &mut C, records: &[M]| -> diesel::QueryResult<usize> {
        ExecuteDsl::execute(diesel::insert_into(table).values(records.to_vec()), conn)
    };
    match flow {
        SaveFlow::AfterInsert => conn
            .transaction::<_, TxError, _>(|conn| {
                for m in records.iter_mut() {
                    ExecuteDsl::execute(diesel::insert_into(table).values(m.clone()), conn)?;
                    if m.record_id().is_none() && M::ID_KIND == IdKind::Integer {
                        let id = conn.kms_last_insert_id()?;
                        m.set_record_id(id).map_err(TxError::Kms)?;
                    }
                }
                first_error(
                    blocking::block_on(kms_fields::bulk::seal_many(kms, records, concurrency))
                        .map_err(TxError::Kms)?,
                )
                .map_err(TxError::Kms)?;
                for m in records.iter() {
                    if (0..M::KEYS.len()).any(|k| m.key_column(k).stored().is_some()) {
                        let (stmt, binds) =
                            sql::key_columns(C::BACKEND, m).map_err(TxError::Kms)?;
                        conn.kms_execute(&stmt, binds)?;
                    }
                }
                Ok(())
            })
            .map_err(Error::from),
        _ => {
            if flow == SaveFlow::Prefetch {
                let need: Vec<usize> = (0..records.len())
                    .filter(|&i| records[i].record_id().is_none())
                    .collect();
                if !need.is_empty() {
                    let ids = conn
                        .kms_next_ids(
                            sql::table::<M>()?,
                            M::ID_COLUMN,
                            M::SEQUENCE,
                            need.len() as i64,
                        )
                        .map_err(Error::database)?;
                    if ids.len() != need.len() {
                        return Err(Error::new(
                            ErrorKind::Database,
                            "nextval returned fewer ids than records",
                        ));
                    }
                    for (i, id) in need.into_iter().zip(ids) {
                        records[i].set_record_id(id)?;
                    }
                }
            }
            first_error(blocking::block_on(kms_fields::bulk::seal_many(
                kms,
                records,
                concurrency,
            ))?)?;
            insert_all(conn, records).map_err(Error::database)?;
            Ok(())
        }
    }
}
