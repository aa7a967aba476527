//! The models of the behavioural suite, mapped onto `users`.

use diesel::prelude::*;
use kms_fields::{EncryptionContext, KmsEncrypted};
use kms_fields_diesel::KmsKey;
use serde::{Deserialize, Serialize};

use crate::schema::users;

/// A serde attribute value (MessagePack in a binary column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub street: String,
    pub city: String,
    pub zip: u32,
}

/// kms_encrypted's test model: two keys (`kms_key` for email and address, `kms_key_phone` for
/// phone), default context `{model_name: "User", model_id: id}`.
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
#[diesel(table_name = users)]
#[kms(
    key(key_id = "insecure-test-key"),
    key(name = "phone", key_id = "insecure-test-key")
)]
pub struct User {
    #[diesel(deserialize_as = i32)]
    pub id: Option<i32>,
    pub name: Option<String>,
    #[kms(encrypted)]
    pub email_enc: Option<String>,
    #[kms(encrypted, key = "phone")]
    pub phone_enc: Option<String>,
    #[kms(encrypted, serde = Address)]
    pub address_enc: Option<Vec<u8>>,
    pub encrypted_kms_key: KmsKey,
    pub encrypted_kms_key_phone: KmsKey,
}

/// The same table read with version 2 current and version 1 accepted (kms_encrypted's
/// `version: 2, previous_versions: {1 => …}`).
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
#[diesel(table_name = users)]
#[kms(model_name = "User")]
#[kms(key(key_id = "insecure-test-key", version = 2, previous(1 = "insecure-test-key")))]
#[kms(key(name = "phone", key_id = "insecure-test-key", version = 2, previous(1 = "insecure-test-key")))]
pub struct UserV2 {
    #[diesel(deserialize_as = i32)]
    pub id: Option<i32>,
    pub name: Option<String>,
    #[kms(encrypted)]
    pub email_enc: Option<String>,
    #[kms(encrypted, key = "phone")]
    pub phone_enc: Option<String>,
    #[kms(encrypted, serde = Address)]
    pub address_enc: Option<Vec<u8>>,
    pub encrypted_kms_key: KmsKey,
    pub encrypted_kms_key_phone: KmsKey,
}

/// A model whose context is custom and needs no id: `{"Name": name}` (kms_encrypted's own
/// test model), so it saves with the eager flow.
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
#[diesel(table_name = users)]
#[kms(model_name = "Account", key(key_id = "insecure-test-key", context = Account::context), key(name = "phone", key_id = "insecure-test-key", context = Account::context))]
pub struct Account {
    #[diesel(deserialize_as = i32)]
    pub id: Option<i32>,
    pub name: Option<String>,
    #[kms(encrypted)]
    pub email_enc: Option<String>,
    #[kms(encrypted, key = "phone")]
    pub phone_enc: Option<String>,
    #[kms(encrypted, serde = Address)]
    pub address_enc: Option<Vec<u8>>,
    pub encrypted_kms_key: KmsKey,
    pub encrypted_kms_key_phone: KmsKey,
}

impl Account {
    fn context(&self, _version: u32) -> kms_fields::Result<EncryptionContext> {
        Ok(EncryptionContext::new().with("Name", self.name.clone().unwrap_or_default()))
    }
}

/// A writer that holds only an encrypt permission (`insecure-test-key/encrypt`).
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
#[diesel(table_name = users)]
#[kms(
    model_name = "User",
    key(key_id = "insecure-test-key/encrypt"),
    key(name = "phone", key_id = "insecure-test-key/encrypt")
)]
pub struct WriterUser {
    #[diesel(deserialize_as = i32)]
    pub id: Option<i32>,
    pub name: Option<String>,
    #[kms(encrypted)]
    pub email_enc: Option<String>,
    #[kms(encrypted, key = "phone")]
    pub phone_enc: Option<String>,
    #[kms(encrypted, serde = Address)]
    pub address_enc: Option<Vec<u8>>,
    pub encrypted_kms_key: KmsKey,
    pub encrypted_kms_key_phone: KmsKey,
}

/// `User` with the after-insert flow forced (to run it on Postgres too).
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
#[diesel(table_name = users)]
#[kms(model_name = "User", save_flow = "after_insert")]
#[kms(
    key(key_id = "insecure-test-key"),
    key(name = "phone", key_id = "insecure-test-key")
)]
pub struct LateUser {
    #[diesel(deserialize_as = i32)]
    pub id: Option<i32>,
    pub name: Option<String>,
    #[kms(encrypted)]
    pub email_enc: Option<String>,
    #[kms(encrypted, key = "phone")]
    pub phone_enc: Option<String>,
    #[kms(encrypted, serde = Address)]
    pub address_enc: Option<Vec<u8>>,
    pub encrypted_kms_key: KmsKey,
    pub encrypted_kms_key_phone: KmsKey,
}

/// `User` with an explicit Postgres sequence (`#[kms(sequence = ...)]`): not the serial's own
/// `users_id_seq` but `users_alt_id_seq` (a Postgres-only migration; it starts at 1,000,000).
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
#[diesel(table_name = users)]
#[kms(model_name = "User", sequence = "users_alt_id_seq")]
#[kms(
    key(key_id = "insecure-test-key"),
    key(name = "phone", key_id = "insecure-test-key")
)]
pub struct SeqUser {
    #[diesel(deserialize_as = i32)]
    pub id: Option<i32>,
    pub name: Option<String>,
    #[kms(encrypted)]
    pub email_enc: Option<String>,
    #[kms(encrypted, key = "phone")]
    pub phone_enc: Option<String>,
    #[kms(encrypted, serde = Address)]
    pub address_enc: Option<Vec<u8>>,
    pub encrypted_kms_key: KmsKey,
    pub encrypted_kms_key_phone: KmsKey,
}

/// The Ruby peer's model in Lockbox mode, version 1 (sets `insecure_v1`).
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
#[diesel(table_name = crate::schema::lockbox_users)]
#[kms(lockbox, model_name = "User")]
#[kms(
    key(key_id = "insecure-test-key"),
    key(name = "phone", key_id = "insecure-test-key")
)]
pub struct LockboxUser {
    #[diesel(deserialize_as = i32)]
    pub id: Option<i32>,
    #[kms(encrypted)]
    pub email_ciphertext: Option<String>,
    #[kms(encrypted, key = "phone")]
    pub phone_ciphertext: Option<String>,
    pub encrypted_kms_key: KmsKey,
    pub encrypted_kms_key_phone: KmsKey,
}

/// The same, read with version 2 and previous_versions {1} (set `insecure_v2`).
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
#[diesel(table_name = crate::schema::lockbox_users)]
#[kms(lockbox, model_name = "User")]
#[kms(key(key_id = "insecure-test-key", version = 2, previous(1 = "insecure-test-key")))]
#[kms(key(name = "phone", key_id = "insecure-test-key", version = 2, previous(1 = "insecure-test-key")))]
pub struct LockboxUserV2 {
    #[diesel(deserialize_as = i32)]
    pub id: Option<i32>,
    #[kms(encrypted)]
    pub email_ciphertext: Option<String>,
    #[kms(encrypted, key = "phone")]
    pub phone_ciphertext: Option<String>,
    pub encrypted_kms_key: KmsKey,
    pub encrypted_kms_key_phone: KmsKey,
}

/// The Ruby peer's model against the moto key (set `aws_v1`).
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
#[diesel(table_name = crate::schema::lockbox_users)]
#[kms(lockbox, model_name = "User")]
#[kms(key(key_id = "arn:aws:kms:us-east-1:123456789012:key/bdd640fb-0667-4ad1-9c80-317fa3b1799d"))]
#[kms(key(
    name = "phone",
    key_id = "arn:aws:kms:us-east-1:123456789012:key/bdd640fb-0667-4ad1-9c80-317fa3b1799d"
))]
pub struct LockboxUserAws {
    #[diesel(deserialize_as = i32)]
    pub id: Option<i32>,
    #[kms(encrypted)]
    pub email_ciphertext: Option<String>,
    #[kms(encrypted, key = "phone")]
    pub phone_ciphertext: Option<String>,
    pub encrypted_kms_key: KmsKey,
    pub encrypted_kms_key_phone: KmsKey,
}

/// A Lockbox-mode model with typed attributes, as the Rails model
///
/// ```ruby
/// class Profile < ApplicationRecord
///   has_kms_key
///   has_encrypted :age, key: :kms_key, type: :integer
///   has_encrypted :score, key: :kms_key, type: :float
///   has_encrypted :active, key: :kms_key, type: :boolean
///   has_encrypted :born_on, key: :kms_key, type: :date
///   has_encrypted :signed_at, key: :kms_key, type: :datetime
///   has_encrypted :opens_at, key: :kms_key, type: :time
///   has_encrypted :balance, key: :kms_key, type: :decimal
///   has_encrypted :data, key: :kms_key, type: :json
///   has_encrypted :ssn, key: :kms_key, padding: true
///   has_encrypted :motto, key: :kms_key, padding: 32
/// end
/// ```
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
#[diesel(table_name = crate::schema::lockbox_profiles)]
#[kms(lockbox, model_name = "Profile", key(key_id = "insecure-test-key"))]
pub struct LockboxProfile {
    #[diesel(deserialize_as = i32)]
    pub id: Option<i32>,
    #[kms(encrypted, codec = kms_fields::codec::lockbox::Integer)]
    pub age_ciphertext: Option<String>,
    #[kms(encrypted, codec = kms_fields::codec::lockbox::Float)]
    pub score_ciphertext: Option<String>,
    #[kms(encrypted, codec = kms_fields::codec::lockbox::Boolean)]
    pub active_ciphertext: Option<String>,
    #[kms(encrypted, codec = kms_fields::codec::lockbox::Date)]
    pub born_on_ciphertext: Option<String>,
    #[kms(encrypted, codec = kms_fields::codec::lockbox::DateTime)]
    pub signed_at_ciphertext: Option<String>,
    #[kms(encrypted, codec = kms_fields::codec::lockbox::Time)]
    pub opens_at_ciphertext: Option<String>,
    #[kms(encrypted, codec = kms_fields::codec::lockbox::Decimal)]
    pub balance_ciphertext: Option<String>,
    #[kms(encrypted, codec = kms_fields::codec::lockbox::Json)]
    pub data_ciphertext: Option<String>,
    #[kms(encrypted, padding)]
    pub ssn_ciphertext: Option<String>,
    #[kms(encrypted, padding = 32)]
    pub motto_ciphertext: Option<String>,
    pub encrypted_kms_key: KmsKey,
}

/// The key id of [`RailsUser`], set by the test that uses it (one process per test).
pub static RAILS_KEY_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn rails_spec() -> kms_fields::KeySpec {
    kms_fields::KeySpec::new().key_id(RAILS_KEY_ID.get().cloned().unwrap_or_default())
}

/// A table migrated from kms_rails: `address_enc` held `kms_attr :address, key_id: …,
/// context_key: "purpose", context_value: "test"` values; the per-record key column was added.
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
#[diesel(table_name = users)]
#[kms(model_name = "User", key(spec = rails_spec))]
pub struct RailsUser {
    #[diesel(deserialize_as = i32)]
    pub id: Option<i32>,
    #[kms(encrypted, kms_rails(context_key = "purpose", context_value = "test"))]
    pub address_enc: Option<Vec<u8>>,
    pub encrypted_kms_key: KmsKey,
}

/// A model whose keys are on Vault (`vault/users`).
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
#[diesel(table_name = users)]
#[kms(model_name = "User", key(key_id = "vault/users"))]
pub struct VaultUser {
    #[diesel(deserialize_as = i32)]
    pub id: Option<i32>,
    #[kms(encrypted)]
    pub email_enc: Option<String>,
    pub encrypted_kms_key: KmsKey,
}

/// [`VaultUser`] at key version 2 (same Vault key; version 1 still read): re-wrapping a v1 row
/// is a native transit `rewrap`, which moves it to the transit key's latest version.
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
#[diesel(table_name = users)]
#[kms(
    model_name = "User",
    key(key_id = "vault/users", version = 2, previous(1 = "vault/users"))
)]
pub struct VaultUserV2 {
    #[diesel(deserialize_as = i32)]
    pub id: Option<i32>,
    #[kms(encrypted)]
    pub email_enc: Option<String>,
    pub encrypted_kms_key: KmsKey,
}

/// A person found by email: a case-insensitive unique blind index (Argon2id, base64 text) and
/// an exact one (PBKDF2 with 1,000 iterations, 16 raw bytes in a binary column, under the
/// second master key "v2").
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
#[diesel(table_name = crate::schema::people)]
#[kms(key(key_id = "insecure-test-key"))]
pub struct Person {
    #[diesel(deserialize_as = i32)]
    pub id: Option<i32>,
    #[kms(
        encrypted,
        blind_index(expression = kms_fields::blind_index::normalize::trim_lowercase, unique),
        blind_index(column = "email_exact_bidx", algorithm = "pbkdf2_sha256", iterations = 1000, size = 16, master_key = "v2")
    )]
    pub email_enc: Option<String>,
    pub email_bidx: Option<String>,
    pub email_exact_bidx: Option<Vec<u8>>,
    pub encrypted_kms_key: KmsKey,
}
