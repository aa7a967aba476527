//! SQL statements of the save flows and rotations, shared by the ORM crates: identifier
//! quoting and placeholders per database, bind values, and the guarded `UPDATE`s of key and
//! ciphertext columns. Plain strings and values — no ORM types.

use crate::model::{IdKind, KmsModel, StoredCiphertext};
use crate::{Error, ErrorKind, Result};

/// The database family of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// PostgreSQL: sequences, `$n` placeholders.
    Postgres,
    /// SQLite: rowids, `?` placeholders.
    Sqlite,
    /// MySQL / MariaDB: auto-increment, `?` placeholders.
    Mysql,
}

impl BackendKind {
    /// The `n`-th (1-based) bind placeholder.
    pub fn placeholder(self, n: usize) -> String {
        match self {
            BackendKind::Postgres => format!("${n}"),
            _ => "?".to_owned(),
        }
    }

    /// Quote an identifier. SQLite gets backticks: a double-quoted name that matches no column
    /// silently becomes a string literal there, a backticked one is always an identifier.
    pub fn quote(self, ident: &str) -> String {
        match self {
            BackendKind::Mysql | BackendKind::Sqlite => format!("`{}`", ident.replace('`', "``")),
            BackendKind::Postgres => format!("\"{}\"", ident.replace('"', "\"\"")),
        }
    }
}

/// A bind value of the raw statements the flows run.
#[derive(Clone, PartialEq, Eq)]
pub enum SqlValue {
    /// Nullable text.
    Text(Option<String>),
    /// Nullable bytes.
    Bytes(Option<Vec<u8>>),
    /// An integer.
    Int(i64),
}

impl std::fmt::Debug for SqlValue {
    /// Ciphertexts and key values are not printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlValue::Text(v) => write!(
                f,
                "Text({})",
                v.as_ref()
                    .map_or("NULL".into(), |s| format!("{} chars", s.len()))
            ),
            SqlValue::Bytes(v) => write!(
                f,
                "Bytes({})",
                v.as_ref()
                    .map_or("NULL".into(), |b| format!("{} bytes", b.len()))
            ),
            SqlValue::Int(i) => write!(f, "Int({i})"),
        }
    }
}

/// The model's table, or a `Config` error.
pub fn table<M: KmsModel>() -> Result<&'static str> {
    M::TABLE.ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            format!("{}: table name unknown: add #[diesel(table_name = ...)] or #[kms(table = \"...\")]", M::MODEL_NAME),
        )
    })
}

/// The record's id as a bind.
pub fn id_value<M: KmsModel>(model: &M) -> Result<SqlValue> {
    let id = model.record_id().ok_or_else(|| {
        Error::new(
            ErrorKind::MissingId,
            format!("{}: the record has no id", M::MODEL_NAME),
        )
    })?;
    Ok(match M::ID_KIND {
        IdKind::Integer => SqlValue::Int(id.parse().map_err(|_| {
            Error::new(
                ErrorKind::Config,
                format!("{}: id is not an integer", M::MODEL_NAME),
            )
        })?),
        IdKind::Other => SqlValue::Text(Some(id)),
    })
}

/// A ciphertext column's value as a bind.
pub fn ciphertext_value(v: StoredCiphertext<'_>) -> SqlValue {
    match v {
        StoredCiphertext::Text(t) => SqlValue::Text(t.map(str::to_owned)),
        StoredCiphertext::Bytes(b) => SqlValue::Bytes(b.map(<[u8]>::to_vec)),
    }
}

/// A statement under construction: `SET` items and their binds.
/// An `UPDATE` under construction.
struct Update {
    b: BackendKind,
    sets: Vec<String>,
    binds: Vec<SqlValue>,
}

impl Update {
    fn new(b: BackendKind) -> Self {
        Self {
            b,
            sets: Vec::new(),
            binds: Vec::new(),
        }
    }
    fn set(&mut self, column: &str, value: SqlValue) {
        self.binds.push(value);
        self.sets.push(format!(
            "{} = {}",
            self.b.quote(column),
            self.b.placeholder(self.binds.len())
        ));
    }
    fn finish<M: KmsModel>(
        mut self,
        model: &M,
        guard: Option<(&str, Option<&str>)>,
    ) -> Result<(String, Vec<SqlValue>)> {
        let b = self.b;
        self.binds.push(id_value(model)?);
        let mut sql = format!(
            "UPDATE {} SET {} WHERE {} = {}",
            b.quote(table::<M>()?),
            self.sets.join(", "),
            b.quote(M::ID_COLUMN),
            b.placeholder(self.binds.len())
        );
        if let Some((column, old)) = guard {
            match old {
                Some(old) => {
                    self.binds.push(SqlValue::Text(Some(old.to_owned())));
                    sql.push_str(&format!(
                        " AND {} = {}",
                        b.quote(column),
                        b.placeholder(self.binds.len())
                    ));
                }
                None => sql.push_str(&format!(" AND {} IS NULL", b.quote(column))),
            }
        }
        Ok((sql, self.binds))
    }
}

/// `UPDATE t SET <key columns> [, updated_at = CURRENT_TIMESTAMP] WHERE id = ?`
/// `UPDATE t SET <key columns> [, updated_at] WHERE id = ?`.
pub fn key_columns<M: KmsModel>(b: BackendKind, model: &M) -> Result<(String, Vec<SqlValue>)> {
    let mut u = Update::new(b);
    for (k, def) in M::KEYS.iter().enumerate() {
        u.set(
            def.column,
            SqlValue::Text(model.key_column(k).stored().map(str::to_owned)),
        );
    }
    if let Some(col) = M::UPDATED_AT {
        u.sets.push(format!("{} = CURRENT_TIMESTAMP", b.quote(col)));
    }
    u.finish(model, None)
}

/// `UPDATE t SET <key columns>, <ciphertext columns> WHERE id = ?`
/// `UPDATE t SET <key and ciphertext columns> WHERE id = ?`.
pub fn encrypted_columns<M: KmsModel>(
    b: BackendKind,
    model: &M,
) -> Result<(String, Vec<SqlValue>)> {
    let mut u = Update::new(b);
    for (k, def) in M::KEYS.iter().enumerate() {
        u.set(
            def.column,
            SqlValue::Text(model.key_column(k).stored().map(str::to_owned)),
        );
    }
    for (i, def) in M::ATTRIBUTES.iter().enumerate() {
        u.set(def.column, ciphertext_value(model.ciphertext(i).stored()));
    }
    u.finish(model, None)
}

/// `UPDATE t SET <key k's column and ciphertexts> WHERE id = ? AND <key column> = <loaded>`
/// `UPDATE t SET <key k and its ciphertexts> WHERE id = ? AND <key column> = <loaded>`.
pub fn one_key_guarded<M: KmsModel>(
    b: BackendKind,
    model: &M,
    key: usize,
) -> Result<(String, Vec<SqlValue>)> {
    let def = &M::KEYS[key];
    let mut u = Update::new(b);
    u.set(
        def.column,
        SqlValue::Text(model.key_column(key).stored().map(str::to_owned)),
    );
    for (i, a) in M::ATTRIBUTES
        .iter()
        .enumerate()
        .filter(|(_, a)| a.key == key)
    {
        u.set(a.column, ciphertext_value(model.ciphertext(i).stored()));
    }
    u.finish(model, Some((def.column, model.key_column(key).loaded())))
}

/// The `Conflict` error of a guarded update that matched no row.
pub fn conflict<M: KmsModel>(key: usize) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!(
            "{} changed concurrently (its {} is not the value read): reload and retry",
            M::MODEL_NAME,
            M::KEYS[key].column
        ),
    )
}
