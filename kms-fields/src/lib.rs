#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

#[cfg(feature = "attachments")]
pub mod attachments;
pub mod audit;
pub mod blind_index;
pub mod blocking;
pub mod bulk;
#[cfg(feature = "cache")]
pub mod cache;
pub mod cipher;
pub mod codec;
pub mod context;
pub mod data_key;
pub mod encoding;
pub mod envelope;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod keyring;
pub mod kms;
pub mod kms_box;
#[cfg(feature = "kms-rails")]
pub mod kms_rails;
pub mod migration;
pub mod model;
pub mod provider;
mod rate_limit;
pub mod save;
pub mod sql;
pub mod table;

pub use audit::{CallStats, Operation};
pub use blind_index::BlindIndex;
#[cfg(feature = "cache")]
pub use cache::DecryptCache;
pub use context::EncryptionContext;
pub use data_key::DataKey;
pub use envelope::StoredKey;
pub use error::{Error, ErrorKind, Result};
pub use keyring::{KeyIdResolver, KeyIdSource, KeySpec, KeyVersion};
pub use kms::{ContextFn, Kms, KmsBuilder};
pub use kms_box::{KmsBox, Sealed};
pub use provider::{Provider, ProviderKind};

/// `#[derive(KmsEncrypted)]` (feature `derive`, from kms-fields-derive): the generated methods and
/// every `#[kms(...)]` option follow.
#[cfg(feature = "derive")]
pub use kms_fields_derive::KmsEncrypted;
pub use model::{
    AttrDef, AttrHandle, BidxDef, BidxHandle, KeyColumn, KeyDef, KeyHandle, KmsModel, SaveFlow,
};

/// What generated code refers to (not a public API).
#[doc(hidden)]
pub mod __private {
    pub use crate::blind_index;
    pub use crate::blocking;
    pub use crate::codec;
    pub use crate::model;
    pub use std::sync::LazyLock;
}
