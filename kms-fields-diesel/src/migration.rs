//! SQL for your own migrations: see [`kms_fields::migration`] (re-exported here).

pub use kms_fields::migration::*;
