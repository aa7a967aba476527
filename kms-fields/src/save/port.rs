//! [`SavePort`]: what the save engine needs from an ORM connection.

use async_trait::async_trait;

use crate::Result;
use crate::model::KmsModel;
use crate::table::TableDb;

/// An ORM connection as the save engine sees it: the statements of the table engine's
/// [`TableDb`] (run a statement, load ids, begin / commit / roll back) plus the ORM's own
/// `INSERT` of a model. Implemented by `kms-fields-diesel` (sync and async) and
/// `kms-fields-seaorm`; the engine never sees an ORM type.
///
/// The rows passed to the inserts are complete: every key column holds its wrapped value or
/// NULL, never a pending data key.
#[async_trait]
pub trait SavePort<M: KmsModel>: TableDb {
    /// `INSERT` one row. Returns the integer id the database assigned when `row` had none and
    /// the ORM can tell (SQLite `last_insert_rowid()`, MySQL `LAST_INSERT_ID()` — both
    /// unaffected by triggers — or the row SeaORM returns); `None` otherwise.
    async fn insert_one(&mut self, row: &M) -> Result<Option<i64>>;

    /// `INSERT` all rows in one statement (each has its id, or needs none).
    async fn insert_all(&mut self, rows: &[M]) -> Result<()>;
}
