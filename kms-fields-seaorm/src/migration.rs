//! Migration helpers: add (or drop) the key, ciphertext and blind-index columns from a
//! sea-orm-migration `MigrationTrait::up` (or any connection). The SQL is
//! [`kms_fields::migration`]'s, one statement at a time (SQLite alters one column per statement).
//!
//! ```ignore
//! async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
//!     kms_fields_seaorm::migration::add_model_columns::<user::Model, _>(manager.get_connection()).await
//! }
//! ```

use kms_fields::KmsModel;
pub use kms_fields::migration::{Column, ColumnKind};
use sea_orm::{ConnectionTrait, DbErr};

use crate::save::backend;

async fn run<C: ConnectionTrait>(db: &C, sql: &str) -> Result<(), DbErr> {
    for stmt in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        db.execute_unprepared(stmt).await?;
    }
    Ok(())
}

/// Add `columns` to `table` (nullable), with the blind indexes' indexes.
pub async fn add_columns<C: ConnectionTrait>(
    db: &C,
    table: &str,
    columns: &[Column],
) -> Result<(), DbErr> {
    run(
        db,
        &kms_fields::migration::add_columns(backend(db), table, columns),
    )
    .await
}

/// Drop `columns` (and their indexes) from `table`.
pub async fn drop_columns<C: ConnectionTrait>(
    db: &C,
    table: &str,
    columns: &[Column],
) -> Result<(), DbErr> {
    run(
        db,
        &kms_fields::migration::drop_columns(backend(db), table, columns),
    )
    .await
}

/// Add model `M`'s key and ciphertext columns to its table.
pub async fn add_model_columns<M: KmsModel, C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    let sql = kms_fields::migration::model_up::<M>(backend(db))
        .map_err(|e| DbErr::Custom(e.to_string()))?;
    run(db, &sql).await
}

/// Drop model `M`'s key and ciphertext columns.
pub async fn drop_model_columns<M: KmsModel, C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    let sql = kms_fields::migration::model_down::<M>(backend(db))
        .map_err(|e| DbErr::Custom(e.to_string()))?;
    run(db, &sql).await
}
