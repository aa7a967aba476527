//! [`KmsKey`]: the Diesel column type of `encrypted_kms_key` columns.

use std::ops::{Deref, DerefMut};

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{Nullable, Text};
use kms_fields::KeyColumn;
use kms_fields::model::AsKeyColumn;

/// A key column (`encrypted_kms_key`, `encrypted_kms_key_<name>`) for Diesel models: a
/// nullable text column (`Nullable<Text>` or `Text`) that also carries the record's data key
/// once it is known, so every attribute of a record costs one KMS call per key and a freshly
/// loaded record needs a fresh decrypt. `Debug` shows its state, never the stored value.
///
/// ```
/// use kms_fields_diesel::KmsKey;
/// let key = KmsKey::default();
/// assert!(key.stored().is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub struct KmsKey(pub KeyColumn);

impl KmsKey {
    /// A key column holding `stored` (as read from the database).
    pub fn from_stored(stored: Option<String>) -> Self {
        Self(KeyColumn::from_stored(stored))
    }
}

impl Deref for KmsKey {
    type Target = KeyColumn;
    fn deref(&self) -> &KeyColumn {
        &self.0
    }
}

impl DerefMut for KmsKey {
    fn deref_mut(&mut self) -> &mut KeyColumn {
        &mut self.0
    }
}

impl AsKeyColumn for KmsKey {
    fn key_column(&self) -> &KeyColumn {
        &self.0
    }
    fn key_column_mut(&mut self) -> &mut KeyColumn {
        &mut self.0
    }
}

impl<DB: Backend> FromSql<Text, DB> for KmsKey
where
    String: FromSql<Text, DB>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
        Ok(Self::from_stored(Some(String::from_sql(bytes)?)))
    }
}

impl<DB: Backend> FromSql<Nullable<Text>, DB> for KmsKey
where
    String: FromSql<Text, DB>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
        Ok(Self::from_stored(Some(String::from_sql(bytes)?)))
    }

    fn from_nullable_sql(bytes: Option<DB::RawValue<'_>>) -> deserialize::Result<Self> {
        match bytes {
            Some(b) => <Self as FromSql<Nullable<Text>, DB>>::from_sql(b),
            None => Ok(Self::from_stored(None)),
        }
    }
}

/// The error of writing a pending key through Diesel's own insert / update.
const PENDING_KEY: &str = "kms-fields: this record has a new data key that is not wrapped yet; \
writing it with diesel::insert_into / diesel::update would store a NULL key column and ciphertexts \
nobody can decrypt. Save it with kms_fields_diesel::insert / insert_many (new records) or \
kms_fields_diesel::update_encrypted (existing ones), or call kms_seal(&kms) first";

impl<DB: Backend> ToSql<Text, DB> for KmsKey
where
    str: ToSql<Text, DB>,
{
    /// A pending data key (a new record or a rotated key, not yet wrapped) refuses to
    /// serialize: writing NULL beside its ciphertexts would leave a row nobody can decrypt.
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
        if self.0.is_pending() {
            return Err(PENDING_KEY.into());
        }
        match self.0.stored() {
            Some(s) => <str as ToSql<Text, DB>>::to_sql(s, out),
            None => Ok(IsNull::Yes),
        }
    }
}
