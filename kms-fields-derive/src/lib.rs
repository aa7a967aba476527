//! `#[derive(KmsEncrypted)]` for [kms-fields](https://docs.rs/kms-fields): the attribute
//! parsing and code generation only — every generated method calls the `kms-fields` library.
//!
//! The attribute reference is on the `KmsEncrypted` derive itself; use the derive through
//! `kms_fields` (feature `derive`), which re-exports it.

mod attr;
mod ctxt;
mod expand;
mod model;

use proc_macro::TokenStream;

/// Derive per-record envelope encryption for a model struct.
///
/// Mark the ciphertext columns `#[kms(encrypted)]` and declare the model's keys on the struct;
/// the derive implements `kms_fields::KmsModel` and generates typed accessors. Every record gets
/// its own data key, wrapped by the KMS with the record named in the encryption context and
/// stored in the key column (`encrypted_kms_key`, type `kms_fields::KeyColumn` or the ORM
/// crate's `KmsKey`).
///
/// ```
/// use kms_fields::{KeyColumn, Kms, KmsEncrypted};
///
/// #[derive(Default, KmsEncrypted)]
/// #[kms(key(key_id = "insecure-test-key"))]
/// struct User {
///     id: Option<i64>,
///     #[kms(encrypted)]
///     email_enc: Option<String>,
///     encrypted_kms_key: KeyColumn,
/// }
///
/// let kms = Kms::new();
/// let mut user = User { id: Some(1), ..Default::default() };
/// user.set_email_blocking(&kms, Some("ada@example.org"))?;   // fresh data key, no KMS call
/// user.kms_seal_blocking(&kms)?;                              // wrap it: one Encrypt
/// assert!(user.encrypted_kms_key.stored().unwrap().starts_with("v1:"));
/// assert_eq!(user.email_blocking(&kms)?.as_deref(), Some("ada@example.org"));
/// # Ok::<(), kms_fields::Error>(())
/// ```
///
/// # What it generates
///
/// - per encrypted attribute `x`: `x(&kms)` (async) and `x_blocking(&kms)` returning
///   `Result<Option<T>>`, `set_x(&kms, Option<&T>)` and `set_x_blocking`;
/// - per key (`kms_key`, or `kms_key_<name>` for a named key): `kms_key(&kms)`,
///   `kms_encryption_context()` (`kms_encryption_context_<name>()`), `rotate_kms_key(&kms)`
///   and the `_blocking` forms;
/// - per blind index stored in column `c`: `Self::c(&kms, value)`, `Self::c_async` and
///   `Self::c_in` (several values, for `WHERE c IN (…)`);
/// - the model: `Self::kms_keys()`, `Self::kms_attributes()`, `kms_unlock`, `kms_seal`, and on a
///   SeaORM entity `Model` the `ActiveModel` accessors the kms-fields-seaorm hooks use.
///
/// # Options on the struct
///
/// | option | meaning |
/// |---|---|
/// | `model_name = "User"` | the model name in the default context `{"model_id", "model_name"}` (default: the struct name; a struct named `Model` must set it) |
/// | `table = "users"` | the table (default: from `#[diesel(table_name = …)]` or `#[sea_orm(table_name = "…")]`); blind indexes need one |
/// | `id = field` | the primary-key field (default: the field marked `#[kms(id)]`, else the field `id`); the default context needs it |
/// | `lockbox` | Lockbox compatibility: ciphertext fields named `<attr>_ciphertext`, empty associated data |
/// | `save_flow = "auto"` | `"auto"` (default), `"prefetch"` (Postgres `nextval`, wrap, one INSERT), `"eager"` (wrap before the INSERT) or `"after_insert"` (transaction: INSERT, wrap, UPDATE) |
/// | `sequence = "users_id_seq"` | the Postgres sequence of the prefetch flow (default: `pg_get_serial_sequence(table, id)`) |
/// | `crate = "my_crate::kms_fields"` | the path of `kms_fields`, for crates that re-export it (default `::kms_fields`) |
/// | `seaorm_hooks = path::to::kms` | on a SeaORM entity `Model`: also generate `ActiveModelBehavior for ActiveModel`, calling `kms_fields_seaorm::hooks::before_save` with `path::to::kms()` (a `fn() -> &'static Kms`) |
/// | `key(...)` | declare a key (repeatable, options below); with none, one default key whose id comes from `KMS_KEY_ID` |
///
/// # Options of `key(...)`
///
/// | option | meaning |
/// |---|---|
/// | `name = "phone"` | a named key: column `encrypted_kms_key_phone`, methods `kms_key_phone…` (default: the unnamed key, column `encrypted_kms_key`) |
/// | `key_id = "alias/users"` | a static key id; the id picks the provider (`insecure-test-key`, `local/…`, `vault/…`, `projects/…`, else AWS) |
/// | `key_id_env = "USERS_KEY_ID"` | read the key id from this environment variable (default `KMS_KEY_ID`) |
/// | `key_id_fn = path` | a key id per record: `fn(&Self) -> impl ToString` (multi-tenant) |
/// | `version = 2` | the current version, written as `v2:` (default 1) |
/// | `previous(1 = "alias/old", …)` | versions still readable, with their key ids; any other stored version is `Version not active` |
/// | `context = path` | a custom context: `fn(&Self, version: u32) -> kms_fields::Result<EncryptionContext>` |
/// | `spec = path` | the whole `KeySpec`: `fn() -> KeySpec` (per-version providers, resolvers); excludes `key_id*`, `version`, `previous`, `upgrade_context` |
/// | `column = "…"` | the key column's field (default `encrypted_kms_key` / `encrypted_kms_key_<name>`) |
/// | `upgrade_context` | unwrap legacy unprefixed key columns with an empty context (kms_encrypted's `upgrade_context: true`) |
/// | `attachments` | the key also encrypts files: a plain rotation is refused (use `rotate_kms_key_with_attachments`); a key that only encrypts files needs no attribute |
///
/// Choose at most one of `key_id`, `key_id_env`, `key_id_fn`.
///
/// # Options on a field
///
/// A ciphertext field is `Option<String>` (text column, base64) or `Option<Vec<u8>>` (binary
/// column).
///
/// | option | meaning |
/// |---|---|
/// | `encrypted` | this field holds an attribute's ciphertext (required for every option below) |
/// | `key = "phone"` | encrypt under the named key (`"phone"` or `"kms_key_phone"`; default: the unnamed key) |
/// | `attr = "email"` | the attribute name (default: the field name minus `_enc`, or minus `_ciphertext` with `lockbox`; other names need `attr`) |
/// | `binary` | the plaintext is `Vec<u8>` (raw bytes) |
/// | `serde = Type` | the plaintext is `Type: Serialize + DeserializeOwned`, as MessagePack |
/// | `codec = Type` | the plaintext goes through your `kms_fields::codec::Codec` (e.g. the Lockbox codecs) |
/// | `associated_data = "…"` | the AES-GCM associated data (default: the attribute name; empty with `lockbox`) |
/// | `padding` / `padding = N` | ISO/IEC 7816-4 padding to a block of N bytes (default 16; 1 to 1048576), as Lockbox's `padding` |
/// | `kms_rails` / `kms_rails(context_key = "k", context_value = "v")` | while the key column is NULL, read the value as a kms_rails envelope (kms-fields feature `kms-rails`) |
/// | `blind_index(...)` | a blind index of this (String) attribute; repeatable, options below |
/// | `id` | on the primary-key field instead of the struct's `id = field` |
///
/// Choose at most one of `binary`, `serde`, `codec` (none: `String`).
///
/// # Options of `blind_index(...)`
///
/// The index is stored in a field `Option<String>` (base64) or `Option<Vec<u8>>` (raw bytes);
/// values are byte-identical to the blind_index gem's.
///
/// | option | meaning |
/// |---|---|
/// | `column = "email_bidx"` | the index column (default `<attr>_bidx`) |
/// | `expression = path` | normalise first: `fn(&str) -> String`, e.g. `kms_fields::blind_index::normalize::trim_lowercase` |
/// | `algorithm = "argon2id"` | `"argon2id"` (default) or `"pbkdf2_sha256"` |
/// | `cost(t = 3, m = 12)` | Argon2id iterations (3 to 10) and memory as log2 of KiB (3 to 22), as the gem's `cost:` (default t = 3, m = 12) |
/// | `iterations = 10000` | PBKDF2 iterations (1 to 100000000; default 10000) |
/// | `slow` | the gem's `slow: true`: Argon2id t = 4, m = 15, or 100000 PBKDF2 iterations |
/// | `size = 32` | output bytes (Argon2id 4 to 32, PBKDF2 1 to 32; default 32) |
/// | `master_key = "name"` | a named master key (`Kms::builder().blind_index_key_named`) instead of the default one |
/// | `unique` | the column carries a unique index (for the migration helpers) |
///
/// # A fuller example
///
/// ```ignore
/// #[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
/// #[diesel(table_name = users)]
/// #[kms(key(key_id = "alias/users"))]                                   // encrypted_kms_key
/// #[kms(key(name = "phone", key_id = "alias/users-phone", version = 2, previous(1 = "alias/users")))]
/// pub struct User {
///     #[diesel(deserialize_as = i32)]
///     pub id: Option<i32>,
///     #[kms(encrypted, blind_index(expression = kms_fields::blind_index::normalize::trim_lowercase, unique))]
///     pub email_enc: Option<String>,                                   // attribute `email`
///     pub email_bidx: Option<String>,
///     #[kms(encrypted, key = "phone", padding)]
///     pub phone_enc: Option<String>,
///     #[kms(encrypted, serde = Address)]
///     pub address_enc: Option<Vec<u8>>,                                // binary column
///     pub encrypted_kms_key: KmsKey,
///     pub encrypted_kms_key_phone: KmsKey,
/// }
/// ```
///
/// Mistakes are compile errors that point at the attribute and say what is expected: unknown or
/// duplicate options, a ciphertext field of another type, a key used but not declared, a
/// missing key or blind-index column, a tuple struct or enum.
#[proc_macro_derive(KmsEncrypted, attributes(kms))]
pub fn derive_kms_encrypted(input: TokenStream) -> TokenStream {
    derive_kms_encrypted_inner(input.into()).into()
}

/// The derive over proc_macro2 tokens, so unit tests can expand it without a compiler.
fn derive_kms_encrypted_inner(input: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    syn::parse2(input)
        .and_then(expand::derive)
        .unwrap_or_else(syn::Error::into_compile_error)
}

#[cfg(test)]
mod tests;
