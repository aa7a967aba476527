//! The helper for your `ActiveModelBehavior`: `am.insert(db)` / `am.save(db)` then wrap the
//! new data keys on the hook's connection (inside your transaction when you pass one).
//!
//! ```ignore
//! static KMS: std::sync::LazyLock<kms_fields::Kms> = std::sync::LazyLock::new(kms_fields::Kms::from_env);
//!
//! #[async_trait::async_trait]
//! impl ActiveModelBehavior for ActiveModel {
//!     async fn before_save<C: ConnectionTrait>(self, db: &C, insert: bool) -> Result<Self, DbErr> {
//!         kms_fields_seaorm::hooks::before_save(self, db, insert, &KMS).await
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
//! - SQLite / MySQL with a database-assigned id and the default context: the data key can only
//!   be wrapped once the INSERT has given the id, and nothing secret may be kept between the
//!   hooks — so `before_save` refuses (`DbErr::Custom` naming the call to make):
//!   save such a new record with [`kms_fields_seaorm::insert`](crate::insert), which runs
//!   the after-insert flow in one transaction (and runs your hooks too). Updates of existing
//!   records through the hooks work on every database.
//!
//! Records with a custom context or a per-record key id are wrapped from their `Model`, so the
//! ActiveModel must have every field set (as `Model::into_active_model` gives).
//! `Entity::insert_many` runs no hooks: use `kms_fields_seaorm::insert_many`.

use kms_fields::model::{self, IdKind, KmsActiveModel};
use kms_fields::sql::BackendKind;
use kms_fields::{Error, KeyColumn, Kms, KmsModel, SaveFlow};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, TryIntoModel};

use crate::save::{backend, next_ids};

fn to_db(e: Error) -> DbErr {
    DbErr::Custom(e.to_string())
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
        return Err(DbErr::Custom(format!(
            "kms-fields: a new {} gets its id from the database on this backend, and its data key can only be wrapped with that id: ActiveModel::insert can't do that without keeping the key between its hooks. Save new records with kms_fields_seaorm::insert(db, kms, &mut model) (one transaction: INSERT, wrap, UPDATE), or give the record its id first",
            <A::Model as KmsModel>::MODEL_NAME
        )));
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
