//! The save engine: every write of an encrypted record — [`insert`], [`insert_many`],
//! [`update_encrypted`], [`rotate_kms_key`], [`rewrap_kms_key`] — planned, sealed and written
//! here, once, over the small [`SavePort`] an ORM adapter implements (`kms-fields-diesel` for
//! sync Diesel and diesel-async, `kms-fields-seaorm`). What [`crate::table`] is for whole
//! tables, this is for records (docs/adr/0009-save-engine-in-the-core.md).
//!
//! The data of a save travels one way: plan the flow ([`plan`]) → take the ids it needs →
//! wrap the new data keys with the record's context → write the row. On any error the
//! records are put back as they were (keys, and an id the database had not kept), so the call
//! can be retried; nothing is written.
//!
//! The flows (the model's `save_flow`, or picked per database):
//!
//! - `Prefetch` (Postgres, integer id): the ids from the id's sequence (`nextval`, one query for
//!   all records), the keys wrapped with them, ONE `INSERT`: no KMS call inside a transaction.
//! - `Eager` (the id is known, or no context needs it): wrap, ONE `INSERT`.
//! - `AfterInsert` (SQLite, MySQL: the database assigns the id): one transaction {`INSERT` with
//!   the key columns NULL, read the id the database gave (`last_insert_rowid()` /
//!   `LAST_INSERT_ID()`, which triggers do not disturb), wrap, `UPDATE` the key columns}. The
//!   KMS calls inside it run under [`Kms::transaction_deadline`]: past it the transaction is
//!   rolled back, and a retryable failure re-runs the whole transaction (three attempts).
//!
//! On Postgres a database-assigned integer id always comes from the sequence *before* the
//! `INSERT` — never from `lastval()`, which a trigger inserting elsewhere changes.

mod plan;
mod port;

pub use plan::{any_pending, plan};
pub use port::SavePort;

use crate::bulk::seal_many;
use crate::error::{Error, ErrorKind, Result};
use crate::kms::Kms;
use crate::model::{self, IdKind, KeyColumn, KeyHandle, KmsModel, SaveFlow};
use crate::sql::{self, BackendKind};
use crate::table::{TableDb, finish};

/// How often the after-insert transaction is tried when its KMS calls fail retryably.
const TRANSACTION_ATTEMPTS: usize = 3;

/// A record's key columns and id before a save, to put back when it fails.
struct Snapshot {
    keys: Vec<KeyColumn>,
    had_id: bool,
}

impl Snapshot {
    fn take<M: KmsModel>(m: &M) -> Self {
        Self {
            keys: (0..M::KEYS.len())
                .map(|k| m.key_column(k).clone())
                .collect(),
            had_id: m.record_id().is_some(),
        }
    }

    fn restore<M: KmsModel>(&self, m: &mut M) {
        for (k, col) in self.keys.iter().enumerate() {
            *m.key_column_mut(k) = col.clone();
        }
        if !self.had_id {
            m.clear_record_id();
        }
    }
}

/// After a successful write: every key column is what the database holds.
fn mark_saved<M: KmsModel>(m: &mut M) {
    for k in 0..M::KEYS.len() {
        m.key_column_mut(k).mark_saved();
    }
}

fn first_error(results: Vec<Result<usize>>) -> Result<()> {
    results
        .into_iter()
        .find_map(|r| r.err())
        .map_or(Ok(()), Err)
}

/// Insert a new record, wrapping its new data keys with the flow [`plan`] picks (see the
/// module docs). Returns the flow used. On error nothing is written and the record is as
/// before.
pub async fn insert<M, P>(db: &mut P, kms: &Kms, model: &mut M) -> Result<SaveFlow>
where
    M: KmsModel + Clone,
    P: SavePort<M> + ?Sized,
{
    insert_many(db, kms, std::slice::from_mut(model), 1).await
}

/// Insert many new records: their data keys are wrapped concurrently (at most `concurrency`
/// KMS calls in flight); on Postgres ONE `nextval` query gives every id and ONE multi-row
/// `INSERT` writes them; in the after-insert flow one transaction holds an `INSERT` per record
/// (for its id), the wraps and an `UPDATE` per record. All or nothing. Returns the flow used.
pub async fn insert_many<M, P>(
    db: &mut P,
    kms: &Kms,
    records: &mut [M],
    concurrency: usize,
) -> Result<SaveFlow>
where
    M: KmsModel + Clone,
    P: SavePort<M> + ?Sized,
{
    let Some(first) = records.first() else {
        return Ok(SaveFlow::Eager);
    };
    let backend = db.backend();
    let mut flow = plan(backend, first)?;
    for r in records.iter().skip(1) {
        if plan(backend, r)? == SaveFlow::AfterInsert {
            flow = SaveFlow::AfterInsert;
        }
    }
    tracing::debug!(target: "kms_fields::save", model = M::MODEL_NAME, flow = ?flow, records = records.len(), "insert");
    let snapshots: Vec<Snapshot> = records.iter().map(Snapshot::take).collect();
    let concurrency = concurrency.max(1);
    let result = if flow == SaveFlow::AfterInsert {
        after_insert(db, kms, records, &snapshots, concurrency).await
    } else {
        sealed_insert(db, kms, records, concurrency).await
    };
    match result {
        Ok(()) => {
            records.iter_mut().for_each(mark_saved);
            Ok(flow)
        }
        Err(e) => {
            for (m, s) in records.iter_mut().zip(&snapshots) {
                s.restore(m);
            }
            Err(e)
        }
    }
}

/// Postgres, integer ids: give every record without an id one from the sequence (one query).
async fn assign_ids<M, P>(db: &mut P, records: &mut [M]) -> Result<()>
where
    M: KmsModel,
    P: SavePort<M> + ?Sized,
{
    if db.backend() != BackendKind::Postgres || M::ID_KIND != IdKind::Integer {
        return Ok(());
    }
    let need: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].record_id().is_none())
        .collect();
    if need.is_empty() {
        return Ok(());
    }
    let (stmt, binds) = sql::next_ids::<M>(need.len())?;
    let ids = db.load_ids(&stmt, binds).await?;
    if ids.len() != need.len() {
        return Err(Error::new(
            ErrorKind::Database,
            format!(
                "{}: the id sequence returned {} ids for {} records",
                M::MODEL_NAME,
                ids.len(),
                need.len()
            ),
        ));
    }
    for (i, id) in need.into_iter().zip(ids) {
        let id: i64 = id.parse().map_err(|_| {
            Error::new(
                ErrorKind::Database,
                format!("{}: the id sequence returned a non-integer", M::MODEL_NAME),
            )
        })?;
        records[i].set_record_id(id)?;
    }
    Ok(())
}

/// `Prefetch` and `Eager`: ids (Postgres), wraps, then the INSERT.
async fn sealed_insert<M, P>(
    db: &mut P,
    kms: &Kms,
    records: &mut [M],
    concurrency: usize,
) -> Result<()>
where
    M: KmsModel + Clone,
    P: SavePort<M> + ?Sized,
{
    assign_ids(db, records).await?;
    first_error(seal_many(kms, records, concurrency).await)?;
    if let [one] = records {
        if let Some(id) = db.insert_one(one).await?
            && one.record_id().is_none()
            && M::ID_KIND == IdKind::Integer
        {
            one.set_record_id(id)?;
        }
    } else {
        db.insert_all(records).await?;
    }
    Ok(())
}

/// `m` as the after-insert flow's INSERT writes it: the pending keys' columns NULL (they are
/// wrapped once the id is known). The data keys stay with `m`.
fn parked<M: KmsModel + Clone>(m: &M) -> M {
    let mut row = m.clone();
    for k in 0..M::KEYS.len() {
        if row.key_column(k).is_pending() {
            *row.key_column_mut(k) = KeyColumn::default();
        }
    }
    row
}

/// `AfterInsert`: the transaction, tried again when its KMS calls fail retryably.
async fn after_insert<M, P>(
    db: &mut P,
    kms: &Kms,
    records: &mut [M],
    snapshots: &[Snapshot],
    concurrency: usize,
) -> Result<()>
where
    M: KmsModel + Clone,
    P: SavePort<M> + ?Sized,
{
    let mut attempt = 1;
    loop {
        db.begin().await?;
        let result = after_insert_once(db, kms, records, concurrency).await;
        match finish(db, result).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retryable() && attempt < TRANSACTION_ATTEMPTS => {
                tracing::debug!(target: "kms_fields::save", model = M::MODEL_NAME, attempt, error = %e, "after-insert transaction rolled back; trying again");
                for (m, s) in records.iter_mut().zip(snapshots) {
                    s.restore(m);
                }
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn after_insert_once<M, P>(
    db: &mut P,
    kms: &Kms,
    records: &mut [M],
    concurrency: usize,
) -> Result<()>
where
    M: KmsModel + Clone,
    P: SavePort<M> + ?Sized,
{
    assign_ids(db, records).await?;
    let pending: Vec<Vec<usize>> = records
        .iter()
        .map(|m| {
            (0..M::KEYS.len())
                .filter(|&k| m.key_column(k).is_pending())
                .collect()
        })
        .collect();
    for m in records.iter_mut() {
        let id = db.insert_one(&parked(m)).await?;
        if m.record_id().is_none() && M::ID_KIND == IdKind::Integer {
            match id {
                Some(id) => m.set_record_id(id)?,
                None => {
                    return Err(Error::new(
                        ErrorKind::MissingId,
                        format!("{}: the database assigned no id", M::MODEL_NAME),
                    ));
                }
            }
        }
    }
    if pending.iter().all(Vec::is_empty) {
        return Ok(());
    }
    let deadline = kms.transaction_deadline();
    let sealed = tokio::time::timeout(deadline, seal_many(kms, records, concurrency))
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::ProviderUnavailable,
                format!(
                    "{}: the KMS did not answer within {deadline:?} while a database transaction was open (Kms::with_transaction_deadline)",
                    M::MODEL_NAME
                ),
            )
            .retryable(true)
        })?;
    first_error(sealed)?;
    for (m, keys) in records.iter().zip(&pending) {
        if keys.is_empty() {
            continue;
        }
        let (stmt, binds) = sql::after_insert_keys(db.backend(), m, keys)?;
        if db.execute(&stmt, binds).await? != 1 {
            return Err(sql::conflict::<M>("the inserted row"));
        }
    }
    Ok(())
}

/// Write the record's encrypted state: wrap any new data key (one KMS `Encrypt` each, never a
/// `Decrypt`), then ONE `UPDATE` of its ciphertext and blind-index columns and of the key
/// columns that changed, guarded on every key column's loaded value: a concurrent rotation or
/// re-wrap makes it a `Conflict` (reload and retry), never ciphertexts under a data key the row
/// no longer has, and a writer never undoes a re-wrap. Other columns are left to your own
/// update. Returns `Conflict` when the row changed or is gone.
pub async fn update_encrypted<M, P>(db: &mut P, kms: &Kms, model: &mut M) -> Result<()>
where
    M: KmsModel,
    P: TableDb + ?Sized,
{
    sql::table::<M>()?;
    let snapshot = Snapshot::take(model);
    let result = async {
        model::seal_pending_keys(model, kms).await?;
        let (stmt, binds) = sql::encrypted_columns(db.backend(), &*model)?;
        match db.execute(&stmt, binds).await? {
            0 => Err(sql::conflict::<M>("a key column")),
            _ => Ok(()),
        }
    }
    .await;
    match result {
        Ok(()) => {
            mark_saved(model);
            Ok(())
        }
        Err(e) => {
            snapshot.restore(model);
            Err(e)
        }
    }
}

/// Write key `key`'s columns (its key column and its attributes' ciphertexts) with ONE guarded
/// `UPDATE … WHERE id = ? AND <key column> = <value when loaded>`. `Conflict` when a concurrent
/// writer changed the row first (nothing is overwritten).
pub async fn update_key_columns<M, P>(db: &mut P, model: &mut M, key: KeyHandle<M>) -> Result<()>
where
    M: KmsModel,
    P: TableDb + ?Sized,
{
    let key = key.index();
    let def = sql::key_def::<M>(key)?;
    let (stmt, binds) = sql::one_key_guarded(db.backend(), &*model, key)?;
    if db.execute(&stmt, binds).await? == 0 {
        return Err(sql::conflict::<M>(def.column));
    }
    model.key_column_mut(key).mark_saved();
    Ok(())
}

/// kms_encrypted's `rotate_kms_key!` for key `key` (`User::KMS_KEY`): decrypt its
/// attributes (one `Decrypt`), draw a new data key, re-encrypt them, wrap the key (one
/// `Encrypt`), and save with one guarded `UPDATE` of that key's columns. On error the record
/// is as before.
pub async fn rotate_kms_key<M, P>(
    db: &mut P,
    kms: &Kms,
    model: &mut M,
    handle: KeyHandle<M>,
) -> Result<()>
where
    M: KmsModel,
    P: TableDb + ?Sized,
{
    let key = handle.index();
    let def = sql::key_def::<M>(key)?;
    if def.attachments {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "{} {}: this key also encrypts files, which a plain rotation would leave unreadable: rotate it with rotate_kms_key_with_attachments (feature `attachments`), or re-wrap it (rewrap_kms_key keeps the data key)",
                M::MODEL_NAME,
                def.method
            ),
        ));
    }
    let snapshot = Snapshot::take(model);
    // the key's ciphertexts, to put back if the new key can't be saved (rotate_key only
    // rewrites them after every one of them decrypted, so they read as valid here)
    let mut ciphertexts: Vec<(usize, Option<Vec<u8>>)> = Vec::new();
    for (i, a) in M::ATTRIBUTES.iter().enumerate() {
        if a.key == key {
            match model.ciphertext(i).read() {
                None => ciphertexts.push((i, None)),
                Some(Ok(ct)) => ciphertexts.push((i, Some(ct.into_owned()))),
                Some(Err(_)) => {}
            }
        }
    }
    let result = async {
        model::rotate_key(model, kms, key).await?;
        model::seal_pending_keys(model, kms).await?;
        update_key_columns(db, model, handle).await
    }
    .await;
    if result.is_err() {
        snapshot.restore(model);
        for (i, ct) in ciphertexts {
            model.ciphertext_mut(i).write(ct);
        }
    }
    result
}

/// Re-wrap key `key` (same data key, current version/key id/context; AWS ReEncrypt and Vault
/// rewrap when possible) and save with one guarded `UPDATE`. Ciphertexts are untouched.
/// Returns `false` when there was nothing to do.
pub async fn rewrap_kms_key<M, P>(
    db: &mut P,
    kms: &Kms,
    model: &mut M,
    handle: KeyHandle<M>,
) -> Result<bool>
where
    M: KmsModel,
    P: TableDb + ?Sized,
{
    let key = handle.index();
    sql::key_def::<M>(key)?;
    let snapshot = Snapshot::take(model);
    let result = async {
        if !model::rewrap_key(model, kms, key).await? {
            return Ok(false);
        }
        update_key_columns(db, model, handle).await?;
        Ok(true)
    }
    .await;
    if result.is_err() {
        snapshot.restore(model);
    }
    result
}

/// A key by name, for names known only at run time (prefer the derive's constants,
/// `User::KMS_KEY`): `None` or `"kms_key"` for the default key, `"phone"` or `"kms_key_phone"`
/// for a named one.
pub fn key_index<M: KmsModel>(name: Option<&str>) -> Result<KeyHandle<M>> {
    let method = match name {
        None | Some("kms_key") => "kms_key".to_owned(),
        Some(n) => format!("kms_key_{}", n.trim_start_matches("kms_key_")),
    };
    M::KEYS
        .iter()
        .position(|k| k.method == method)
        .map(KeyHandle::__new)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("{} has no key {method}", M::MODEL_NAME),
            )
        })
}
