//! The save flows of DESIGN §4 over SeaORM (async), the encrypted-column update, rotation.

use kms_fields::model::{self, IdKind, save as flow};
use kms_fields::sql::{self, BackendKind, SqlValue};
use kms_fields::{Error, ErrorKind, Kms, KmsModel, Result, SaveFlow, bulk};
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ConnectionTrait, DbBackend, EntityTrait,
    IntoActiveModel, Iterable, PrimaryKeyToColumn, Statement, TransactionSession, TransactionTrait,
};

/// kms-fields' backend of a SeaORM connection.
pub fn backend<C: ConnectionTrait>(db: &C) -> BackendKind {
    match db.get_database_backend() {
        DbBackend::Postgres => BackendKind::Postgres,
        DbBackend::MySql => BackendKind::Mysql,
        _ => BackendKind::Sqlite,
    }
}

pub(crate) fn db_err(e: sea_orm::DbErr) -> Error {
    Error::database(e)
}

pub(crate) fn to_values(binds: Vec<SqlValue>) -> Vec<sea_orm::Value> {
    binds
        .into_iter()
        .map(|b| match b {
            SqlValue::Text(t) => sea_orm::Value::String(t),
            SqlValue::Bytes(b) => sea_orm::Value::Bytes(b),
            SqlValue::Int(i) => sea_orm::Value::BigInt(Some(i)),
        })
        .collect()
}

/// Run one of kms-fields' statements; returns the affected rows.
pub(crate) async fn execute<C: ConnectionTrait>(
    db: &C,
    stmt: &str,
    binds: Vec<SqlValue>,
) -> Result<u64> {
    let s = Statement::from_sql_and_values(db.get_database_backend(), stmt, to_values(binds));
    db.execute_raw(s)
        .await
        .map(|r| r.rows_affected())
        .map_err(db_err)
}

/// Postgres: `n` ids from the sequence of `M`'s id in one query.
pub(crate) async fn next_ids<M: KmsModel, C: ConnectionTrait>(
    db: &C,
    n: usize,
) -> Result<Vec<i64>> {
    let table = sql::table::<M>()?;
    let (stmt, values): (&str, Vec<sea_orm::Value>) = match M::SEQUENCE {
        Some(seq) => (
            "SELECT nextval($1::regclass) AS id FROM generate_series(1, $2)",
            vec![seq.into(), (n as i64).into()],
        ),
        None => (
            "SELECT nextval(pg_get_serial_sequence($1, $2)) AS id FROM generate_series(1, $3)",
            vec![table.into(), M::ID_COLUMN.into(), (n as i64).into()],
        ),
    };
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            stmt,
            values,
        ))
        .await
        .map_err(db_err)?;
    rows.iter()
        .map(|r| r.try_get::<i64>("", "id").map_err(db_err))
        .collect()
}

/// The flow [`insert`] uses for `model` on `db`.
pub fn planned_flow<M: KmsModel, C: ConnectionTrait>(db: &C, model: &M) -> Result<SaveFlow> {
    flow::plan(backend(db), model)
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

/// Learn the id the database gave the inserted row (integer ids), and the keys the model's own
/// hooks (`kms_fields_seaorm::hooks`) already wrapped, so they are not wrapped twice.
fn adopt_id<M: KmsModel>(model: &mut M, saved: &M) -> Result<()> {
    if model.record_id().is_none()
        && let Some(id) = saved.record_id()
    {
        let id: i64 = id
            .parse()
            .map_err(|_| Error::new(ErrorKind::Config, "the database id is not an integer"))?;
        model.set_record_id(id)?;
    }
    for k in 0..M::KEYS.len() {
        if let (true, Some(stored)) = (
            model.key_column(k).is_pending(),
            saved.key_column(k).stored(),
        ) {
            let stored = stored.to_owned();
            model.key_column_mut(k).set_wrapped(stored);
        }
    }
    Ok(())
}

/// Insert a new record with the flow [`planned_flow`] picks (see `kms_fields_diesel::insert`
/// for the flows): `Prefetch` on Postgres (`nextval`, wrap, ONE `INSERT`, no KMS call in a
/// transaction), `Eager`, or `AfterInsert` (one transaction: INSERT, wrap, UPDATE of the key
/// columns). The model's own `ActiveModelBehavior` hooks run as for `ActiveModel::insert`. On
/// error nothing is written and the model's keys are as before. Returns the flow used.
pub async fn insert<M, A, C>(db: &C, kms: &Kms, model: &mut M) -> Result<SaveFlow>
where
    M: KmsModel + IntoActiveModel<A> + Clone + Send,
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
    C: ConnectionTrait + TransactionTrait,
    A::Entity: EntityTrait<Model = M>,
{
    let flow = planned_flow(db, model)?;
    let had_id = model.record_id().is_some();
    let snapshot = flow::key_snapshot(model);
    match run_insert::<M, A, C>(db, kms, model, flow).await {
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

async fn run_insert<M, A, C>(db: &C, kms: &Kms, model: &mut M, flow: SaveFlow) -> Result<()>
where
    M: KmsModel + IntoActiveModel<A> + Clone + Send,
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
    C: ConnectionTrait + TransactionTrait,
    A::Entity: EntityTrait<Model = M>,
{
    let pending = flow::any_pending(model);
    if flow == SaveFlow::AfterInsert && pending {
        let txn = db.begin().await.map_err(db_err)?;
        let saved: M = to_active::<M, A>(model)
            .insert(&txn)
            .await
            .map_err(db_err)?;
        adopt_id(model, &saved)?;
        if model::seal_pending_keys(model, kms).await? > 0 {
            let (stmt, binds) = sql::key_columns(backend(db), &*model)?;
            execute(&txn, &stmt, binds).await?;
        }
        txn.commit().await.map_err(db_err)?;
        return Ok(());
    }
    if flow == SaveFlow::Prefetch && pending && model.record_id().is_none() {
        let id = next_ids::<M, C>(db, 1)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::new(ErrorKind::Database, "nextval returned no id"))?;
        model.set_record_id(id)?;
    }
    model::seal_pending_keys(model, kms).await?;
    let saved: M = to_active::<M, A>(model).insert(db).await.map_err(db_err)?;
    adopt_id(model, &saved)
}

/// Insert many new records — SeaORM's hooks do not fire for `Entity::insert_many`, so this is
/// its encrypted counterpart: on Postgres one `nextval` query for every id, the wraps
/// concurrently (at most `concurrency` KMS calls), then one multi-row `INSERT`; elsewhere one
/// transaction { an INSERT per record, the wraps, an UPDATE of each key column }. All or
/// nothing. To call `Entity::insert_many` yourself on Postgres, run [`prepare_insert_many`]
/// first.
pub async fn insert_many<M, A, C>(
    db: &C,
    kms: &Kms,
    records: &mut [M],
    concurrency: usize,
) -> Result<SaveFlow>
where
    M: KmsModel + IntoActiveModel<A> + Clone + Send,
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
    C: ConnectionTrait + TransactionTrait,
    A::Entity: EntityTrait<Model = M>,
{
    let Some(first) = records.first() else {
        return Ok(SaveFlow::Eager);
    };
    let flow = planned_flow(db, first)?;
    let snapshots: Vec<_> = records
        .iter()
        .map(|m| (flow::key_snapshot(m), m.record_id().is_some()))
        .collect();
    let result: Result<()> = async {
        if flow == SaveFlow::AfterInsert {
            let txn = db.begin().await.map_err(db_err)?;
            for m in records.iter_mut() {
                let saved: M = to_active::<M, A>(m).insert(&txn).await.map_err(db_err)?;
                adopt_id(m, &saved)?;
            }
            let wrapped: Vec<bool> = records.iter().map(flow::any_pending).collect();
            first_error(bulk::seal_many(kms, records, concurrency).await)?;
            for (m, _) in records.iter().zip(wrapped).filter(|(_, w)| *w) {
                let (stmt, binds) = sql::key_columns(backend(db), m)?;
                execute(&txn, &stmt, binds).await?;
            }
            txn.commit().await.map_err(db_err)
        } else {
            prepare_insert_many(db, kms, records, concurrency).await?;
            let rows: Vec<A> = records
                .iter()
                .map(|m| m.clone().into_active_model())
                .collect();
            <A::Entity as EntityTrait>::insert_many(rows)
                .exec(db)
                .await
                .map_err(db_err)?;
            Ok(())
        }
    }
    .await;
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

/// The bulk seal step before your own `Entity::insert_many`: on Postgres, ids for records that
/// have none (one `nextval` query); then every new data key wrapped, concurrently. Needs ids on
/// SQLite/MySQL (use [`insert_many`] there).
pub async fn prepare_insert_many<M: KmsModel, C: ConnectionTrait>(
    db: &C,
    kms: &Kms,
    records: &mut [M],
    concurrency: usize,
) -> Result<()> {
    let need: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].record_id().is_none())
        .collect();
    if !need.is_empty() {
        if backend(db) != BackendKind::Postgres || M::ID_KIND != IdKind::Integer {
            if (0..M::KEYS.len()).any(|k| M::context_needs_id(k)) {
                return Err(Error::new(
                    ErrorKind::MissingId,
                    format!(
                        "{}: ids are needed before a bulk insert on this database: use kms_fields_seaorm::insert_many",
                        M::MODEL_NAME
                    ),
                ));
            }
        } else {
            let ids = next_ids::<M, C>(db, need.len()).await?;
            for (i, id) in need.into_iter().zip(ids) {
                records[i].set_record_id(id)?;
            }
        }
    }
    first_error(bulk::seal_many(kms, records, concurrency).await)
}

fn first_error(results: Vec<Result<usize>>) -> Result<()> {
    results
        .into_iter()
        .find_map(|r| r.err())
        .map_or(Ok(()), Err)
}

/// Wrap new keys (never a Decrypt) and write the key and ciphertext columns with ONE `UPDATE`.
pub async fn update_encrypted<M: KmsModel, C: ConnectionTrait>(
    db: &C,
    kms: &Kms,
    model: &mut M,
) -> Result<u64> {
    let snapshot = flow::key_snapshot(model);
    let result = async {
        model::seal_pending_keys(model, kms).await?;
        let (stmt, binds) = sql::encrypted_columns(backend(db), &*model)?;
        execute(db, &stmt, binds).await
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

pub(crate) async fn guarded_update<M: KmsModel, C: ConnectionTrait>(
    db: &C,
    model: &mut M,
    key: usize,
) -> Result<()> {
    let (stmt, binds) = sql::one_key_guarded(backend(db), &*model, key)?;
    if execute(db, &stmt, binds).await? == 0 {
        return Err(sql::conflict::<M>(key));
    }
    model.key_column_mut(key).mark_saved();
    Ok(())
}

/// kms_encrypted's `rotate_kms_key!`: new data key, that key's attributes re-encrypted, one
/// guarded `UPDATE` (a concurrent write wins with `ErrorKind::Conflict`).
pub async fn rotate_kms_key<M: KmsModel, C: ConnectionTrait>(
    db: &C,
    kms: &Kms,
    model: &mut M,
    key: usize,
) -> Result<()> {
    model::rotate_key(model, kms, key).await?;
    model::seal_pending_keys(model, kms).await?;
    guarded_update(db, model, key).await
}

/// Re-wrap key `key` to the current version (same data key), one guarded `UPDATE`.
pub async fn rewrap_kms_key<M: KmsModel, C: ConnectionTrait>(
    db: &C,
    kms: &Kms,
    model: &mut M,
    key: usize,
) -> Result<bool> {
    if !model::rewrap_key(model, kms, key).await? {
        return Ok(false);
    }
    guarded_update(db, model, key).await?;
    Ok(true)
}
