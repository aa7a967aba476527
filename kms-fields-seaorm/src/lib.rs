#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

#[cfg(feature = "attachments")]
pub mod attachments;
pub mod hooks;
mod key_column;
pub mod migration;
mod port;
pub mod rotation;
mod save;

pub use key_column::KmsKey;
pub use save::{
    backend, insert, insert_many, planned_flow, prepare_insert_many, rewrap_kms_key,
    rotate_kms_key, update_encrypted,
};

pub use kms_fields::{KmsEncrypted, SaveFlow};
