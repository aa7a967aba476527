//! The save engine of [`kms_fields::save`] on a SeaORM connection: each function here builds
//! the connection's port and runs the engine.

use kms_fields::model::IdKind;
use kms_fields::sql::{BackendKind, SqlValue};
use kms_fields::{Error, ErrorKind, KeyHandle, Kms, KmsModel, Result, SaveFlow, bulk, save};
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ConnectionTrait, DbBackend, EntityTrait,
    IntoActiveModel, Statement, TransactionTrait,
};

use crate::port::sea;

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

/// Postgres: `n` ids from the sequence of `M`'s id in one query (the hooks' prefetch).
pub(crate) async fn next_ids<M: KmsModel, C: ConnectionTrait>(
    db: &C,
    n: usize,
) -> Result<Vec<i64>> {
    let (stmt, binds) = kms_fields::sql::next_ids::<M>(n)?;
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            stmt,
            to_values(binds),
        ))
        .await
        .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            let id: String = r.try_get("", "kmsf_id").map_err(db_err)?;
            id.parse().map_err(|_| {
                Error::new(
                    ErrorKind::Database,
                    "the id sequence returned a non-integer",
                )
            })
        })
        .collect()
}

/// The flow [`insert`] uses for `model` on `db`.
pub fn planned_flow<M: KmsModel, C: ConnectionTrait>(db: &C, model: &M) -> Result<SaveFlow> {
    save::plan(backend(db), model)
}

/// Insert a new record with the flow [`planned_flow`] picks ([`kms_fields::save`] describes
/// the flows): `Prefetch` on Postgres (`nextval`, wrap, ONE `INSERT`, no KMS call in a
/// transaction), `Eager`, or `AfterInsert` (one transaction: INSERT, wrap, UPDATE of the key
/// columns). The model's own `ActiveModelBehavior` hooks run as for `ActiveModel::insert`. On
/// error nothing is written and the model's keys are as before. Returns the flow used.
pub async fn insert<M, A, C>(db: &C, kms: &Kms, model: &mut M) -> Result<SaveFlow>
where
    M: KmsModel + IntoActiveModel<A> + Clone + Send,
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    C: ConnectionTrait + TransactionTrait + Sync,
    C::Transaction: Sync,
    A::Entity: EntityTrait<Model = M>,
{
    save::insert(&mut sea::<C, A>(db), kms, model).await
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
    C: ConnectionTrait + TransactionTrait + Sync,
    C::Transaction: Sync,
    A::Entity: EntityTrait<Model = M>,
{
    save::insert_many(&mut sea::<C, A>(db), kms, records, concurrency).await
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
    bulk::seal_many(kms, records, concurrency)
        .await
        .into_iter()
        .find_map(|r| r.err())
        .map_or(Ok(()), Err)
}

/// Wrap new keys (never a Decrypt) and write the key, ciphertext and blind-index columns with
/// ONE `UPDATE` guarded on the key columns as loaded ([`kms_fields::save::update_encrypted`]):
/// `ErrorKind::Conflict` when a rotation or re-wrap changed the row meanwhile (reload and retry)
/// or the row is gone.
pub async fn update_encrypted<M, C>(db: &C, kms: &Kms, model: &mut M) -> Result<()>
where
    M: KmsModel,
    C: ConnectionTrait + TransactionTrait + Sync,
{
    save::update_encrypted(&mut sea::<C, ()>(db), kms, model).await
}

/// kms_encrypted's `rotate_kms_key!`: new data key, that key's attributes re-encrypted, one
/// guarded `UPDATE` (a concurrent write wins with `ErrorKind::Conflict`).
pub async fn rotate_kms_key<M, C>(db: &C, kms: &Kms, model: &mut M, key: KeyHandle<M>) -> Result<()>
where
    M: KmsModel,
    C: ConnectionTrait + TransactionTrait + Sync,
{
    save::rotate_kms_key(&mut sea::<C, ()>(db), kms, model, key).await
}

/// Re-wrap key `key` to the current version (same data key), one guarded `UPDATE`.
pub async fn rewrap_kms_key<M, C>(
    db: &C,
    kms: &Kms,
    model: &mut M,
    key: KeyHandle<M>,
) -> Result<bool>
where
    M: KmsModel,
    C: ConnectionTrait + TransactionTrait + Sync,
{
    save::rewrap_kms_key(&mut sea::<C, ()>(db), kms, model, key).await
}

/// [`rotate_kms_key`]'s guarded write of key `key`'s columns (used by the attachment rotation).
pub(crate) async fn guarded_update<M, C>(db: &C, model: &mut M, key: KeyHandle<M>) -> Result<()>
where
    M: KmsModel,
    C: ConnectionTrait + TransactionTrait + Sync,
{
    save::update_key_columns(&mut sea::<C, ()>(db), model, key).await
}
