//! Helpers for your `ActiveModelBehavior`: `am.insert(db)` / `am.save(db)` then run the save
//! flows on the hook's connection (inside your transaction when you pass one).
//!
//! ```ignore
//! static KMS: std::sync::LazyLock<kms_fields::Kms> = std::sync::LazyLock::new(kms_fields::Kms::from_env);
//!
//! #[async_trait::async_trait]
//! impl ActiveModelBehavior for ActiveModel {
//!     async fn before_save<C: ConnectionTrait>(self, db: &C, insert: bool) -> Result<Self, DbErr> {
//!         kms_fields_seaorm::hooks::before_save(self, db, insert, &KMS).await
//!     }
//!     async fn after_save<C: ConnectionTrait>(model: Model, db: &C, insert: bool) -> Result<Model, DbErr> {
//!         kms_fields_seaorm::hooks::after_save::<ActiveModel, _>(model, db, insert, &KMS).await
//!     }
//! }
//! ```
//!
//! or let the derive write that impl: `#[kms(seaorm_hooks = crate::kms)]` with
//! `fn kms() -> &'static Kms`.
//!
//! - Postgres, integer id: `before_save` takes the id from the sequence and wraps the new keys;
//!   the INSERT writes everything (one statement).
//! - Known id, or contexts that need none: `before_save` wraps (eager).
//! - SQLite / MySQL with a database-assigned id: `before_save` keeps the new keys aside,
//!   `after_save` (same connection, after the INSERT) wraps them with the new id and UPDATEs
//!   the key columns — kms_encrypted's flow. Pass a transaction to make the two one unit.
//!
//! Records with a custom context or a per-record key id are wrapped from their `Model`, so the
//! ActiveModel must have every field set (as `Model::into_active_model` gives).
//! `Entity::insert_many` runs no hooks: use `kms_fields_seaorm::insert_many`.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use kms_fields::model::{self, IdKind, KmsActiveModel};
use kms_fields::sql::{self, BackendKind};
use kms_fields::{Error, KeyColumn, Kms, KmsModel, SaveFlow};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, TryIntoModel};

use crate::save::{backend, execute, next_ids};

/// New keys kept between `before_save` and `after_save` of the after-insert flow, by model type
/// and the record's ciphertexts (random nonces make them unique); dropped after 10 minutes if
/// the insert never completed. The data keys are zeroized when dropped.
type Pending = HashMap<(TypeId, Vec<u8>), (Instant, Vec<(usize, KeyColumn)>)>;
static PENDING: LazyLock<Mutex<Pending>> = LazyLock::new(|| Mutex::new(HashMap::new()));
const PENDING_TTL: Duration = Duration::from_secs(600);

fn to_db(e: Error) -> DbErr {
    DbErr::Custom(e.to_string())
}

fn poisoned() -> DbErr {
    DbErr::Custom("kms-fields hook state poisoned".into())
}

fn fingerprint<M: KmsModel>(m: &M) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..M::ATTRIBUTES.len() {
        match m.ciphertext(i).stored() {
            model::StoredCiphertext::Text(t) => {
                out.extend_from_slice(t.unwrap_or_default().as_bytes())
            }
            model::StoredCiphertext::Bytes(b) => out.extend_from_slice(b.unwrap_or_default()),
        }
        out.push(0);
    }
    out
}

/// Call from `ActiveModelBehavior::before_save`.
pub async fn before_save<A, C>(mut am: A, db: &C, insert: bool, kms: &Kms) -> Result<A, DbErr>
where
    A: ActiveModelTrait
        + KmsActiveModel
        + TryIntoModel<<A as KmsActiveModel>::Model>
        + Clone
        + Send,
    A::Model: sea_orm::ModelTrait + 'static,
    C: ConnectionTrait,
{
    if insert {
        // an id of 0 (or None) is not a value to insert: the database (or the prefetch) assigns it
        am.kms_unset_unassigned_id();
    }
    let keys = <A::Model as KmsModel>::KEYS.len();
    let pending: Vec<usize> = (0..keys)
        .filter(|&k| am.kms_key_column(k).is_some_and(KeyColumn::is_pending))
        .collect();
    if pending.is_empty() {
        return Ok(am);
    }
    let needs_id = pending
        .iter()
        .any(|&k| <A::Model as KmsModel>::context_needs_id(k));
    let flow = match <A::Model as KmsModel>::SAVE_FLOW {
        SaveFlow::Auto if am.kms_record_id().is_some() || !needs_id => SaveFlow::Eager,
        SaveFlow::Auto
            if backend(db) == BackendKind::Postgres
                && <A::Model as KmsModel>::ID_KIND == IdKind::Integer =>
        {
            SaveFlow::Prefetch
        }
        SaveFlow::Auto => SaveFlow::AfterInsert,
        other => other,
    };
    if insert && flow == SaveFlow::AfterInsert && am.kms_record_id().is_none() {
        let entry: Vec<(usize, KeyColumn)> = pending
            .iter()
            .filter_map(|&k| am.kms_key_column(k).map(|c| (k, c.clone())))
            .collect();
        let mut map = PENDING.lock().map_err(|_| poisoned())?;
        map.retain(|_, (at, _)| at.elapsed() < PENDING_TTL);
        map.insert(
            (TypeId::of::<A::Model>(), am.kms_fingerprint()),
            (Instant::now(), entry),
        );
        return Ok(am);
    }
    if insert && flow == SaveFlow::Prefetch && am.kms_record_id().is_none() {
        let ids = next_ids::<A::Model, C>(db, 1).await.map_err(to_db)?;
        let id = ids
            .into_iter()
            .next()
            .ok_or_else(|| DbErr::Custom("nextval returned no id".into()))?;
        am.kms_set_record_id(id).map_err(to_db)?;
    }
    // wrap each new key with the record's context
    let custom = pending
        .iter()
        .any(|&k| !<A::Model as KmsModel>::context_needs_id(k));
    let full: Option<A::Model> = if custom {
        Some(am.clone().try_into_model()?)
    } else {
        None
    };
    for k in pending {
        let spec = <A::Model as KmsModel>::key_spec(k);
        let version = spec.current_version();
        let (ctx, per_record) = match &full {
            Some(m) => (
                m.encryption_context(k, version).map_err(to_db)?,
                m.key_id_for(k),
            ),
            None => (
                model::default_context(<A::Model as KmsModel>::MODEL_NAME, am.kms_record_id())
                    .map_err(to_db)?,
                None,
            ),
        };
        let Some(key) = am.kms_key_column(k).and_then(|c| c.cached_key().cloned()) else {
            continue;
        };
        let stored = kms
            .wrap_data_key(spec, per_record.as_deref(), &key, &move |_| Ok(ctx.clone()))
            .await
            .map_err(to_db)?;
        if let Some(col) = am.kms_key_column_mut(k) {
            col.set_wrapped(stored);
        }
    }
    Ok(am)
}

/// Call from `ActiveModelBehavior::after_save` (the after-insert flow's second half).
pub async fn after_save<A, C>(
    mut model: A::Model,
    db: &C,
    insert: bool,
    kms: &Kms,
) -> Result<A::Model, DbErr>
where
    A: KmsActiveModel,
    A::Model: 'static,
    C: ConnectionTrait,
{
    if !insert {
        return Ok(model);
    }
    let key = (TypeId::of::<A::Model>(), fingerprint(&model));
    let entry = PENDING.lock().map_err(|_| poisoned())?.remove(&key);
    let Some((_, keys)) = entry else {
        return Ok(model);
    };
    for (k, col) in keys {
        *model.key_column_mut(k) = col;
    }
    model::seal_pending_keys(&mut model, kms)
        .await
        .map_err(to_db)?;
    let (stmt, binds) = sql::key_columns(backend(db), &model).map_err(to_db)?;
    execute(db, &stmt, binds).await.map_err(to_db)?;
    for k in 0..<A::Model as KmsModel>::KEYS.len() {
        model.key_column_mut(k).mark_saved();
    }
    Ok(model)
}
