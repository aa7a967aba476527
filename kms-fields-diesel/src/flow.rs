//! The save-flow helpers (in the core, shared with the other ORM crates) and the error of a
//! transaction that runs a KMS call.

use kms_fields::Error;
pub(crate) use kms_fields::model::save::{any_pending, key_snapshot, mark_saved, plan, restore};

/// The error of a transaction that runs a KMS call: a database error rolls back, and so does a
/// KMS error (kept as is).
pub(crate) enum TxError {
    Db(diesel::result::Error),
    Kms(Error),
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        TxError::Db(e)
    }
}

impl From<TxError> for Error {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Db(e) => Error::database(e),
            TxError::Kms(e) => e,
        }
    }
}
