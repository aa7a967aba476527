//! SQL statements of the save flows and rotations, shared by the ORM crates: identifier
//! quoting and placeholders per database, bind values, and the guarded `UPDATE`s of key and
//! ciphertext columns. Plain strings and values — no ORM types.
//!
//! A statement's text depends only on the model, the database and its *shape* (which key
//! columns it writes, which guards compare with NULL): each text is built once per model,
//! backend and shape, kept in a process-wide table and shared (`Arc<str>`); a save only
//! collects its bind values. Identifiers are always quoted ([`BackendKind::quote`]); no value
//! is ever part of a text.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use crate::model::{IdKind, KmsModel, StoredCiphertext};
use crate::{Error, ErrorKind, Result};

/// A statement text and its positional binds.
pub type Statement = (Arc<str>, Vec<SqlValue>);

/// Which statement: its kind, model (by type name), database and shape.
type StatementKey = (&'static str, BackendKind, StatementKind, u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum StatementKind {
    AfterInsertKeys,
    EncryptedColumns,
    OneKeyGuarded,
}

static STATEMENTS: LazyLock<RwLock<HashMap<StatementKey, Arc<str>>>> =
    LazyLock::new(Default::default);

/// The text of `key`, built by `build` the first time (every time when `key` is `None`).
fn cached(key: Option<StatementKey>, build: impl FnOnce() -> Result<String>) -> Result<Arc<str>> {
    let Some(key) = key else {
        return build().map(Arc::from);
    };
    if let Some(text) = STATEMENTS.read().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(text);
    }
    let text: Arc<str> = build()?.into();
    if let Ok(mut m) = STATEMENTS.write() {
        m.entry(key).or_insert_with(|| text.clone());
    }
    Ok(text)
}

/// How many statement texts have been built in this process (for tests: a second save of the
/// same shape builds none).
pub fn statements_built() -> usize {
    STATEMENTS.read().map_or(0, |m| m.len())
}

/// The database family of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// Key `key` of `M`, or a `Config` error (never an out-of-range panic).
pub fn key_def<M: KmsModel + ?Sized>(key: usize) -> Result<&'static crate::model::KeyDef> {
    M::KEYS.get(key).ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            format!(
                "{} has no key #{key} (it has {})",
                M::MODEL_NAME,
                M::KEYS.len()
            ),
        )
    })
}

/// Attribute `attr` of `M`, or a `Config` error (never an out-of-range panic).
pub fn attr_def<M: KmsModel + ?Sized>(attr: usize) -> Result<&'static crate::model::AttrDef> {
    M::ATTRIBUTES.get(attr).ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            format!(
                "{} has no encrypted attribute #{attr} (it has {})",
                M::MODEL_NAME,
                M::ATTRIBUTES.len()
            ),
        )
    })
}

/// An `UPDATE … SET … WHERE id = ? [AND guards]` under construction: its bind values in
/// order, and (only when its text is not cached yet) the text.
struct Update {
    b: BackendKind,
    sets: Vec<&'static str>,
    binds: Vec<SqlValue>,
    guards: Vec<(&'static str, Option<String>)>,
}

impl Update {
    fn new(b: BackendKind) -> Self {
        Self {
            b,
            sets: Vec::new(),
            binds: Vec::new(),
            guards: Vec::new(),
        }
    }
    fn set(&mut self, column: &'static str, value: SqlValue) {
        self.sets.push(column);
        self.binds.push(value);
    }
    /// Only update the row while `column` still holds `loaded` (NULL: `IS NULL`).
    fn guard(&mut self, column: &'static str, loaded: Option<&str>) {
        self.guards.push((column, loaded.map(str::to_owned)));
    }
    /// The statement; `kind` and `shape` must determine the columns set and guarded and which
    /// guards are `IS NULL` (the text is shared between every update of that shape).
    fn finish<M: KmsModel>(
        mut self,
        model: &M,
        kind: StatementKind,
        shape: Option<u64>,
    ) -> Result<Statement> {
        let b = self.b;
        let (sets, guards) = (&self.sets, &self.guards);
        let key = shape.map(|shape| (std::any::type_name::<M>(), b, kind, shape));
        let text = cached(key, || {
            let mut n = 0;
            let mut ph = || {
                n += 1;
                b.placeholder(n)
            };
            let sets: Vec<String> = sets
                .iter()
                .map(|c| format!("{} = {}", b.quote(c), ph()))
                .collect();
            let mut sql = format!(
                "UPDATE {} SET {} WHERE {} = {}",
                b.quote(table::<M>()?),
                sets.join(", "),
                b.quote(M::ID_COLUMN),
                ph()
            );
            for (column, old) in guards {
                match old {
                    Some(_) => sql.push_str(&format!(" AND {} = {}", b.quote(column), ph())),
                    None => sql.push_str(&format!(" AND {} IS NULL", b.quote(column))),
                }
            }
            Ok(sql)
        })?;
        self.binds.push(id_value(model)?);
        for (_, old) in std::mem::take(&mut self.guards) {
            if let Some(old) = old {
                self.binds.push(SqlValue::Text(Some(old)));
            }
        }
        Ok((text, self.binds))
    }
}

/// Bit `i` set for each `i` in `bits` (positions of keys); `None` past 32 keys (such a
/// statement is built every time instead of cached).
fn mask(bits: impl IntoIterator<Item = usize>) -> Option<u64> {
    bits.into_iter()
        .try_fold(0u64, |m, i| (i < 32).then(|| m | 1 << i))
}

fn key_value(model: &impl KmsModel, key: usize) -> SqlValue {
    SqlValue::Text(model.key_column(key).stored().map(str::to_owned))
}

/// The second statement of the after-insert flow, in the INSERT's transaction:
/// `UPDATE t SET <the keys in keys> WHERE id = ? AND <each of them> IS NULL`. No other column
/// is touched (`updated_at` keeps the value the application inserted).
pub fn after_insert_keys<M: KmsModel>(
    b: BackendKind,
    model: &M,
    keys: &[usize],
) -> Result<Statement> {
    let mut u = Update::new(b);
    for &k in keys {
        let def = key_def::<M>(k)?;
        u.set(def.column, key_value(model, k));
        u.guard(def.column, None);
    }
    u.finish(
        model,
        StatementKind::AfterInsertKeys,
        mask(keys.iter().copied()),
    )
}

/// `update_encrypted`'s statement: `UPDATE t SET <key columns that changed>, <ciphertexts>,
/// <blind indexes> WHERE id = ? AND <every key column> = <its value when loaded>`. A key column
/// whose data key did not change is not written (a concurrent re-wrap stands), and the guard
/// makes a concurrent rotation or re-wrap a `Conflict` instead of ciphertexts under a data key
/// the row no longer has.
pub fn encrypted_columns<M: KmsModel>(b: BackendKind, model: &M) -> Result<Statement> {
    let mut u = Update::new(b);
    let (mut changed, mut null_guards) = (Vec::new(), Vec::new());
    for (k, def) in M::KEYS.iter().enumerate() {
        let col = model.key_column(k);
        if col.stored() != col.loaded() {
            u.set(def.column, key_value(model, k));
            changed.push(k);
        }
        if col.loaded().is_none() {
            null_guards.push(k);
        }
        u.guard(def.column, col.loaded());
    }
    for (i, def) in M::ATTRIBUTES.iter().enumerate() {
        u.set(def.column, ciphertext_value(model.ciphertext(i).stored()));
    }
    for (j, def) in M::BLIND_INDEXES.iter().enumerate() {
        u.set(def.column, ciphertext_value(model.blind_index_column(j)));
    }
    let shape = mask(changed)
        .zip(mask(null_guards))
        .map(|(c, n)| c | n << 32);
    u.finish(model, StatementKind::EncryptedColumns, shape)
}

/// `UPDATE t SET <key k and its ciphertexts> WHERE id = ? AND <key column> = <loaded>`
/// (rotation and re-wrap of one key).
pub fn one_key_guarded<M: KmsModel>(b: BackendKind, model: &M, key: usize) -> Result<Statement> {
    let def = key_def::<M>(key)?;
    let mut u = Update::new(b);
    u.set(def.column, key_value(model, key));
    for (i, a) in M::ATTRIBUTES
        .iter()
        .enumerate()
        .filter(|(_, a)| a.key == key)
    {
        u.set(a.column, ciphertext_value(model.ciphertext(i).stored()));
    }
    let loaded = model.key_column(key).loaded();
    u.guard(def.column, loaded);
    let shape = (key < 32).then(|| key as u64 | u64::from(loaded.is_none()) << 32);
    u.finish(model, StatementKind::OneKeyGuarded, shape)
}

/// The `Conflict` error of a guarded update that matched no row.
pub fn conflict<M: KmsModel>(what: &str) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!(
            "{} changed concurrently or is gone ({what} is not the value read): reload the record and retry",
            M::MODEL_NAME,
        ),
    )
}

/// Postgres: `n` ids from the sequence of `M`'s id, in one query, as text in `kmsf_id`
/// (`nextval` over `generate_series`; the sequence is `M::SEQUENCE` or
/// `pg_get_serial_sequence(table, id)`).
pub fn next_ids<M: KmsModel>(n: usize) -> Result<(String, Vec<SqlValue>)> {
    let n = i64::try_from(n).map_err(|_| Error::new(ErrorKind::Config, "too many ids"))?;
    Ok(match M::SEQUENCE {
        Some(seq) => (
            "SELECT nextval($1::regclass)::text AS kmsf_id FROM generate_series(1, $2)".into(),
            vec![SqlValue::Text(Some(seq.to_owned())), SqlValue::Int(n)],
        ),
        None => (
            "SELECT nextval(pg_get_serial_sequence($1, $2))::text AS kmsf_id FROM generate_series(1, $3)".into(),
            vec![
                SqlValue::Text(Some(table::<M>()?.to_owned())),
                SqlValue::Text(Some(M::ID_COLUMN.to_owned())),
                SqlValue::Int(n),
            ],
        ),
    })
}
