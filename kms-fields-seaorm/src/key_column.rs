//! [`KmsKey`]: the SeaORM column type of `encrypted_kms_key` columns.

use std::ops::{Deref, DerefMut};

use kms_fields::KeyColumn;
use kms_fields::model::AsKeyColumn;
use sea_orm::sea_query::{ArrayType, ColumnType, Nullable, ValueType, ValueTypeErr};
use sea_orm::{ColIdx, QueryResult, TryGetError, TryGetable, Value};

/// A key column for SeaORM models: a nullable text column that also carries the record's data
/// key once known (see `kms_fields::KeyColumn`). Declare it `#[sea_orm(column_type = "Text",
/// nullable)]`. `Debug` shows its state, never the stored value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KmsKey(pub KeyColumn);

impl Eq for KmsKey {}

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

impl From<KmsKey> for Value {
    fn from(k: KmsKey) -> Self {
        Value::String(k.0.stored().map(str::to_owned))
    }
}

impl TryGetable for KmsKey {
    fn try_get_by<I: ColIdx>(res: &QueryResult, idx: I) -> Result<Self, TryGetError> {
        <Option<String> as TryGetable>::try_get_by(res, idx).map(Self::from_stored)
    }
}

impl ValueType for KmsKey {
    fn try_from(v: Value) -> Result<Self, ValueTypeErr> {
        match v {
            Value::String(s) => Ok(Self::from_stored(s)),
            _ => Err(ValueTypeErr),
        }
    }
    fn type_name() -> String {
        "KmsKey".to_owned()
    }
    fn array_type() -> ArrayType {
        ArrayType::String
    }
    fn column_type() -> ColumnType {
        ColumnType::Text
    }
}

impl Nullable for KmsKey {
    fn null() -> Value {
        Value::String(None)
    }
}
