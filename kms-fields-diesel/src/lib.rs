#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![cfg_attr(
    not(any(feature = "postgres", feature = "sqlite", feature = "mysql")),
    allow(dead_code, unused_macros, unused_imports)
)]

#[cfg(feature = "async-postgres")]
pub mod async_pg;
#[cfg(feature = "attachments")]
pub mod attachments;
mod connection;
mod key_column;
pub mod migration;
mod port;
pub mod rotation;
mod save;

pub use connection::{BackendKind, KmsConnection, SqlValue};
pub use key_column::KmsKey;
pub use save::{
    insert, insert_many, key_index, planned_flow, rewrap_kms_key, rotate_kms_key, update_encrypted,
    update_key_columns,
};

pub use kms_fields::{KmsEncrypted, SaveFlow};
