//! The save engine of [`kms_fields::save`] on a sync Diesel connection: each function here
//! builds the connection's port and runs the engine on the calling thread.

use diesel::Insertable;
use diesel::Table;
use diesel::query_builder::InsertStatement;
use diesel::query_dsl::methods::ExecuteDsl;
use kms_fields::{KeyHandle, Kms, KmsModel, Result, SaveFlow, blocking, save};

use crate::connection::KmsConnection;
use crate::port::{Batch, DieselDb};

/// The flow [`insert`] will use for `model` on connection type `C`:
///
/// - the model's `save_flow` if it is not `auto`;
/// - `Eager` when the record already has its id, or every key has a custom context;
/// - `Prefetch` on Postgres for an integer id;
/// - `AfterInsert` otherwise (SQLite, MySQL).
pub fn planned_flow<M: KmsModel, C: KmsConnection>(model: &M) -> Result<SaveFlow> {
    save::plan(C::BACKEND, model)
}

/// Insert a new record, wrapping its new data keys with the flow [`planned_flow`] picks
/// ([`kms_fields::save`] describes the flows):
///
/// - `Prefetch` (Postgres default): one `nextval` query, the keys wrapped with the id in the
///   context, then ONE `INSERT` — no KMS call inside a database transaction;
/// - `Eager`: wrap, then `INSERT`;
/// - `AfterInsert` (SQLite/MySQL default): in one transaction, `INSERT`, read the new id, wrap,
///   `UPDATE` the key columns — kms_encrypted's flow.
///
/// `table` is the Diesel table (`users::table`) and `M` must be `Insertable` into it; an id
/// the database assigns is an `Option<_>` field left `None`. On error nothing is written and the
/// model's keys are as before, so the call can be retried. Returns the flow used.
///
/// Diesel's own `diesel::insert_into(t).values(&model)` refuses a record with a new data key
/// (a serialization error naming this function): it could only write a row nobody can decrypt.
pub fn insert<T, M, C>(conn: &mut C, kms: &Kms, table: T, model: &mut M) -> Result<SaveFlow>
where
    C: KmsConnection,
    M: KmsModel + Clone + Insertable<T>,
    T: Table + Copy + Send,
    InsertStatement<T, <M as Insertable<T>>::Values>: ExecuteDsl<C>,
{
    blocking::run(save::insert(
        &mut DieselDb::with_table(conn, table),
        kms,
        model,
    ))
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
    T: Table + Copy + Send,
    Vec<M>: Insertable<T>,
    InsertStatement<T, <M as Insertable<T>>::Values>: ExecuteDsl<C>,
    InsertStatement<T, <Vec<M> as Insertable<T>>::Values>: ExecuteDsl<C>,
{
    blocking::run(save::insert_many(
        &mut DieselDb::<C, T, Batch>::with_table(conn, table),
        kms,
        records,
        concurrency,
    ))
}

/// Write the record's encrypted state ([`kms_fields::save::update_encrypted`]): wrap any new
/// data key (one KMS `Encrypt` each, never a `Decrypt`), then ONE `UPDATE` of its ciphertext
/// and blind-index columns and of the key columns that changed, guarded on the key columns as
/// loaded — `ErrorKind::Conflict` when a rotation or re-wrap changed the row meanwhile (reload
/// and retry) or the row is gone. Other columns are left to your own Diesel update.
///
/// Diesel's own `diesel::update(..).set(&model)` refuses a record with a new data key (a
/// serialization error naming this function).
pub fn update_encrypted<M, C>(conn: &mut C, kms: &Kms, model: &mut M) -> Result<()>
where
    C: KmsConnection,
    M: KmsModel,
{
    blocking::run(save::update_encrypted(&mut DieselDb::new(conn), kms, model))
}

/// Write key `key`'s columns (its key column and its attributes' ciphertexts) with ONE guarded
/// `UPDATE … WHERE id = ? AND <key column> = <value when loaded>`. Returns `Conflict` when a
/// concurrent writer changed the row first (nothing is overwritten).
pub fn update_key_columns<M, C>(conn: &mut C, model: &mut M, key: KeyHandle<M>) -> Result<()>
where
    C: KmsConnection,
    M: KmsModel,
{
    blocking::run(save::update_key_columns(
        &mut DieselDb::new(conn),
        model,
        key,
    ))
}

/// kms_encrypted's `rotate_kms_key!` for key `key` (the derive's `User::KMS_KEY`,
/// `User::KMS_KEY_PHONE`; [`key_index`] by name):
/// decrypt its attributes (one `Decrypt`), draw a new data key, re-encrypt them, wrap the key
/// (one `Encrypt`), and save with one guarded `UPDATE` of that key's columns.
pub fn rotate_kms_key<M, C>(conn: &mut C, kms: &Kms, model: &mut M, key: KeyHandle<M>) -> Result<()>
where
    C: KmsConnection,
    M: KmsModel,
{
    blocking::run(save::rotate_kms_key(
        &mut DieselDb::new(conn),
        kms,
        model,
        key,
    ))
}

/// Re-wrap key `key` (same data key, current version/key id/context; AWS ReEncrypt when
/// possible) and save with one guarded `UPDATE`. Ciphertexts are untouched. Returns `false`
/// when there was nothing to do.
pub fn rewrap_kms_key<M, C>(
    conn: &mut C,
    kms: &Kms,
    model: &mut M,
    key: KeyHandle<M>,
) -> Result<bool>
where
    C: KmsConnection,
    M: KmsModel,
{
    blocking::run(save::rewrap_kms_key(
        &mut DieselDb::new(conn),
        kms,
        model,
        key,
    ))
}

/// A key by name, for names known only at run time (prefer the derive's `User::KMS_KEY`):
/// `None` or `"kms_key"` for the default key, `"phone"` or `"kms_key_phone"` for a named one.
pub fn key_index<M: KmsModel>(name: Option<&str>) -> Result<KeyHandle<M>> {
    save::key_index::<M>(name)
}
