//! Rotation and backfill over whole tables, in primary-key batches, without downtime.
//!
//! [`rotate_table`] moves every row whose key column is not `v<current>:` to the current key
//! version:
//!
//! - [`RotationMode::Rewrap`] (default): same data key, wrapped again with the current
//!   version's key id and context (AWS `ReEncrypt` when both versions are AWS); ciphertexts
//!   are untouched;
//! - [`RotationMode::NewDataKey`]: kms_encrypted's `rotate_kms_key!` for every row — a new data
//!   key and every attribute of that key re-encrypted.
//!
//! It never loads the whole table: rows are selected in batches by primary key
//! (`WHERE key NOT LIKE 'v<current>:%' AND id > <last> ORDER BY id LIMIT <batch>`), KMS calls
//! run concurrently up to a bound and under an optional requests-per-second limit, and each row
//! is written with ONE `UPDATE … WHERE id = ? AND <key column> = <old value>` (and, in
//! `NewDataKey` mode, its old ciphertexts too), so a concurrent application write is never
//! overwritten: the row is re-read and retried. A killed run leaves every row either old or
//! new, both readable; running it again finishes the job. On Postgres each batch is selected
//! `FOR UPDATE SKIP LOCKED` inside a transaction, so several processes share the work.
//!
//! [`backfill_table`] encrypts existing plaintext columns into the ciphertext and key columns
//! (Lockbox's `migrate`), resumable the same way.

use std::time::{Duration, Instant};

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, QueryableByName};
use diesel::row::NamedRow;
use diesel::sql_types::{BigInt, Binary, Nullable, Text};
use futures::StreamExt;
use kms_fields::cipher::{self, AttributeOptions};
use kms_fields::model::IdKind;
use kms_fields::{
    DataKey, EncryptionContext, Error, ErrorKind, KeySpec, Kms, KmsModel, Result, StoredKey,
    blocking, encoding,
};

use crate::connection::{BackendKind, KmsConnection, SqlValue};

/// One encrypted attribute column of a [`TableSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrSpec {
    /// The ciphertext column.
    pub column: String,
    /// Binary column (raw bytes) or text (base64).
    pub binary: bool,
    /// Associated data (native mode: the attribute name; Lockbox mode: empty).
    pub associated_data: Vec<u8>,
    /// ISO/IEC 7816-4 padding block.
    pub padding: Option<usize>,
}

impl AttrSpec {
    fn options(&self) -> AttributeOptions<'_> {
        AttributeOptions {
            associated_data: &self.associated_data,
            padding: self.padding,
        }
    }
}

/// What a table operation needs to know: where the key column and ciphertexts are, and how to
/// build each row's default context `{model_name, model_id}`.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// Table name.
    pub table: String,
    /// Primary key column.
    pub id_column: String,
    /// Integer ids (batched numerically) or other ids (batched by their text).
    pub id_kind: IdKind,
    /// The model name of the context.
    pub model_name: String,
    /// The key column (`encrypted_kms_key`).
    pub key_column: String,
    /// The key's versions.
    pub spec: KeySpec,
    /// The attributes encrypted under this key (needed by `NewDataKey` and backfill).
    pub attributes: Vec<AttrSpec>,
}

impl TableSpec {
    /// A table with an integer `id`, no attributes (enough for a re-wrap).
    pub fn new(
        table: impl Into<String>,
        model_name: impl Into<String>,
        key_column: impl Into<String>,
        spec: KeySpec,
    ) -> Self {
        Self {
            table: table.into(),
            id_column: "id".into(),
            id_kind: IdKind::Integer,
            model_name: model_name.into(),
            key_column: key_column.into(),
            spec,
            attributes: Vec::new(),
        }
    }

    /// Key `key` of model `M`. Models whose context is custom or whose key id is computed per
    /// record need their own loop over loaded records (`rotate_kms_key` per record).
    pub fn of_model<M: KmsModel>(key: usize) -> Result<Self> {
        let def = M::KEYS.get(key).ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("{} has no key #{key}", M::MODEL_NAME),
            )
        })?;
        if !M::context_needs_id(key) {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{} {}: a custom encryption context needs the model: rotate loaded records instead",
                    M::MODEL_NAME,
                    def.method
                ),
            ));
        }
        let table = M::TABLE.ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("{}: table name unknown", M::MODEL_NAME),
            )
        })?;
        Ok(Self {
            table: table.into(),
            id_column: M::ID_COLUMN.into(),
            id_kind: M::ID_KIND,
            model_name: M::MODEL_NAME.into(),
            key_column: def.column.into(),
            spec: M::key_spec(key).clone(),
            attributes: M::ATTRIBUTES
                .iter()
                .filter(|a| a.key == key)
                .map(|a| AttrSpec {
                    column: a.column.into(),
                    binary: a.binary,
                    associated_data: a.associated_data.to_vec(),
                    padding: a.padding,
                })
                .collect(),
        })
    }

    fn context(&self, id: &str) -> EncryptionContext {
        EncryptionContext::for_model(&self.model_name, id)
    }
}

/// How [`rotate_table`] rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RotationMode {
    /// Same data key, re-wrapped (no ciphertext changes).
    #[default]
    Rewrap,
    /// A new data key per row, attributes re-encrypted.
    NewDataKey,
}

/// Progress of a table operation, reported after every batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Rows rotated (or backfilled) so far by this run.
    pub done: u64,
    /// Rows that needed it when the run started.
    pub total: u64,
    /// Rows that failed (left as they were).
    pub errors: u64,
    /// Guarded updates that lost to a concurrent writer and were retried.
    pub conflicts: u64,
    /// Time since the start.
    pub elapsed: Duration,
}

impl Progress {
    /// Rows per second so far.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A row that could not be processed.
#[derive(Debug)]
pub struct RowError {
    /// Its id.
    pub id: String,
    /// Why (names the key id and version, never a value).
    pub error: Error,
}

/// The outcome of a table operation.
#[derive(Debug, Default)]
pub struct Summary {
    /// Rows written.
    pub done: u64,
    /// Rows found already done when their turn came (another worker, a concurrent writer).
    pub skipped: u64,
    /// Retried conflicts.
    pub conflicts: u64,
    /// Rows left as they were, with the reason.
    pub errors: Vec<RowError>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Options of [`rotate_table`] and [`backfill_table`].
pub struct TableOptions<'a> {
    /// Rotation mode (rotation only).
    pub mode: RotationMode,
    /// Rows per batch (default 1000).
    pub batch_size: usize,
    /// KMS calls in flight (default 64).
    pub concurrency: usize,
    /// Requests per second to the KMS, at most (KMS quotas); `None`: unlimited.
    pub rate_per_second: Option<f64>,
    /// Attempts per row when concurrent writers keep changing it (default 5).
    pub max_attempts: usize,
    /// Called after every batch.
    pub progress: Option<&'a mut (dyn FnMut(&Progress) + Send)>,
    /// Stop after this many batches (a bounded slice of work per call, e.g. a cron step).
    pub max_batches: Option<usize>,
}

impl Default for TableOptions<'_> {
    fn default() -> Self {
        Self {
            mode: RotationMode::Rewrap,
            batch_size: 1000,
            concurrency: 64,
            rate_per_second: None,
            max_attempts: 5,
            progress: None,
            max_batches: None,
        }
    }
}

impl std::fmt::Debug for TableOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableOptions")
            .field("mode", &self.mode)
            .field("batch_size", &self.batch_size)
            .field("concurrency", &self.concurrency)
            .field("rate_per_second", &self.rate_per_second)
            .finish_non_exhaustive()
    }
}

/// A requests-per-second limiter shared by the calls of a batch.
struct RateLimiter {
    every: Option<Duration>,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl RateLimiter {
    fn new(rate: Option<f64>) -> Self {
        let every = rate
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(1.0 / r));
        Self {
            every,
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    async fn acquire(&self) {
        let Some(every) = self.every else { return };
        let at = {
            let mut next = self.next.lock().await;
            let now = tokio::time::Instant::now();
            let at = (*next).max(now);
            *next = at + every;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// A row as the table operations read it (internal; public for [`KmsConnection`]).
#[doc(hidden)]
#[derive(Clone)]
pub struct Row {
    id: String,
    key: Option<String>,
    cols: Vec<Option<Vec<u8>>>,
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Row")
            .field("id", &self.id)
            .field("columns", &self.cols.len())
            .finish_non_exhaustive()
    }
}

/// Rows come back by alias: `kmsf_id` (text), `kmsf_key`, `kmsf_n` (column count) and
/// `kmsf_t<i>` (text) / `kmsf_b<i>` (binary).
impl<DB: Backend> QueryableByName<DB> for Row
where
    String: FromSql<Text, DB>,
    Vec<u8>: FromSql<Binary, DB>,
    i64: FromSql<BigInt, DB>,
{
    fn build<'a>(row: &impl NamedRow<'a, DB>) -> deserialize::Result<Self> {
        let id: String = NamedRow::get::<Text, String>(row, "kmsf_id")?;
        let key = NamedRow::get::<Nullable<Text>, Option<String>>(row, "kmsf_key")?;
        let n = NamedRow::get::<BigInt, i64>(row, "kmsf_n")?;
        let mut cols = Vec::with_capacity(n as usize);
        for i in 0..n {
            let v =
                match NamedRow::get::<Nullable<Text>, Option<String>>(row, &format!("kmsf_t{i}")) {
                    Ok(t) => t.map(String::into_bytes),
                    Err(_) => NamedRow::get::<Nullable<Binary>, Option<Vec<u8>>>(
                        row,
                        &format!("kmsf_b{i}"),
                    )?,
                };
            cols.push(v);
        }
        Ok(Row { id, key, cols })
    }
}

fn id_as_text(b: BackendKind, col: &str) -> String {
    match b {
        BackendKind::Mysql => format!("CAST({col} AS CHAR)"),
        _ => format!("CAST({col} AS TEXT)"),
    }
}

fn null_safe_eq(b: BackendKind, col: &str, placeholder: &str) -> String {
    match b {
        BackendKind::Postgres => format!("{col} IS NOT DISTINCT FROM {placeholder}"),
        BackendKind::Mysql => format!("{col} <=> {placeholder}"),
        BackendKind::Sqlite => format!("{col} IS {placeholder}"),
    }
}

/// `SELECT` of a batch: rows matching `filter`, after the cursor.
fn select_sql(
    b: BackendKind,
    t: &TableSpec,
    filter: &str,
    after: Option<&str>,
    limit: usize,
    lock: bool,
    extra_cols: &[String],
) -> (String, Vec<SqlValue>) {
    let q = |s: &str| b.quote(s);
    let id = q(&t.id_column);
    let mut cols = vec![
        format!("{} AS kmsf_id", id_as_text(b, &id)),
        format!("{} AS kmsf_key", q(&t.key_column)),
    ];
    let n = extra_cols.len() + t.attributes.len();
    let int = if b == BackendKind::Mysql {
        "SIGNED"
    } else {
        "BIGINT"
    };
    cols.push(format!("CAST({n} AS {int}) AS kmsf_n"));
    for (i, c) in extra_cols.iter().enumerate() {
        cols.push(format!("{} AS kmsf_t{i}", q(c)));
    }
    for (i, a) in t.attributes.iter().enumerate() {
        let alias = if a.binary { "b" } else { "t" };
        cols.push(format!(
            "{} AS kmsf_{alias}{}",
            q(&a.column),
            i + extra_cols.len()
        ));
    }
    let mut binds = Vec::new();
    let mut sql = format!(
        "SELECT {} FROM {} WHERE ({filter})",
        cols.join(", "),
        q(&t.table)
    );
    if let Some(after) = after {
        match t.id_kind {
            IdKind::Integer => {
                binds.push(SqlValue::Int(after.parse().unwrap_or(i64::MIN)));
                sql.push_str(&format!(" AND {id} > {}", b.placeholder(binds.len())));
            }
            IdKind::Other => {
                binds.push(SqlValue::Text(Some(after.to_owned())));
                sql.push_str(&format!(
                    " AND {} > {}",
                    id_as_text(b, &id),
                    b.placeholder(binds.len())
                ));
            }
        }
    }
    let order = match t.id_kind {
        IdKind::Integer => id.clone(),
        IdKind::Other => id_as_text(b, &id),
    };
    sql.push_str(&format!(" ORDER BY {order} LIMIT {limit}"));
    if lock && b == BackendKind::Postgres {
        sql.push_str(" FOR UPDATE SKIP LOCKED");
    }
    (sql, binds)
}

fn id_bind(t: &TableSpec, id: &str) -> SqlValue {
    match t.id_kind {
        IdKind::Integer => SqlValue::Int(id.parse().unwrap_or_default()),
        IdKind::Other => SqlValue::Text(Some(id.to_owned())),
    }
}

fn id_where(b: BackendKind, t: &TableSpec, placeholder: &str) -> String {
    match t.id_kind {
        IdKind::Integer => format!("{} = {placeholder}", b.quote(&t.id_column)),
        IdKind::Other => format!("{} = {placeholder}", id_as_text(b, &b.quote(&t.id_column))),
    }
}

fn not_current(b: BackendKind, t: &TableSpec) -> String {
    let col = b.quote(&t.key_column);
    format!(
        "{col} IS NOT NULL AND {col} NOT LIKE 'v{}:%'",
        t.spec.current_version()
    )
}

fn load_rows<C: KmsConnection>(conn: &mut C, sql: &str, binds: Vec<SqlValue>) -> Result<Vec<Row>> {
    conn.kms_load_rows(sql, binds).map_err(Error::database)
}

/// What one row becomes.
struct NewValues {
    key: String,
    cols: Option<Vec<Option<Vec<u8>>>>,
}

/// Where a row's KMS error happened: model, id, key column, stored version and its key id.
fn row_location(t: &TableSpec, row: &Row) -> String {
    let version = row.key.as_deref().and_then(StoredKey::version_of);
    let key_id = version
        .and_then(|v| t.spec.resolve(v, None).ok())
        .map(|k| k.key_id);
    match (version, key_id) {
        (Some(v), Some(k)) => format!(
            "{}#{} {} (v{v}, key {k})",
            t.model_name, row.id, t.key_column
        ),
        (Some(v), None) => format!("{}#{} {} (v{v})", t.model_name, row.id, t.key_column),
        _ => format!("{}#{} {}", t.model_name, row.id, t.key_column),
    }
}

async fn rotate_row(kms: &Kms, t: &TableSpec, mode: RotationMode, row: &Row) -> Result<NewValues> {
    rotate_row_inner(kms, t, mode, row)
        .await
        .map_err(|e| e.context(row_location(t, row)))
}

async fn rotate_row_inner(
    kms: &Kms,
    t: &TableSpec,
    mode: RotationMode,
    row: &Row,
) -> Result<NewValues> {
    let stored = row
        .key
        .as_deref()
        .ok_or_else(|| Error::new(ErrorKind::BadFormat, "NULL key column"))?;
    let ctx = t.context(&row.id);
    let ctx_fn = move |_: u32| Ok(Some(ctx.clone()));
    match mode {
        RotationMode::Rewrap => Ok(NewValues {
            key: kms.rewrap(&t.spec, None, stored, &ctx_fn).await?,
            cols: None,
        }),
        RotationMode::NewDataKey => {
            let old = kms.unwrap_data_key(&t.spec, None, stored, &ctx_fn).await?;
            let fresh = DataKey::generate()?;
            let mut cols = Vec::with_capacity(t.attributes.len());
            for (a, value) in t.attributes.iter().zip(&row.cols) {
                let new = match value {
                    None => None,
                    Some(v) if v.is_empty() => Some(Vec::new()),
                    Some(v) => {
                        let raw = if a.binary {
                            v.clone()
                        } else {
                            let s = std::str::from_utf8(v).map_err(|_| {
                                Error::new(ErrorKind::BadFormat, "ciphertext column is not text")
                            })?;
                            encoding::strict_decode(s)?
                        };
                        let pt = cipher::decrypt(&old, &raw, a.options())?;
                        let ct = cipher::encrypt(&fresh, &pt, a.options())?;
                        Some(if a.binary {
                            ct
                        } else {
                            encoding::strict_encode(&ct).into_bytes()
                        })
                    }
                };
                cols.push(new);
            }
            let key = kms.wrap_data_key(&t.spec, None, &fresh, &ctx_fn).await?;
            Ok(NewValues {
                key,
                cols: Some(cols),
            })
        }
    }
}

fn col_value(a: &AttrSpec, v: Option<Vec<u8>>) -> SqlValue {
    if a.binary {
        SqlValue::Bytes(v)
    } else {
        SqlValue::Text(v.map(|b| String::from_utf8(b).unwrap_or_default()))
    }
}

/// `UPDATE … SET key (and ciphertexts) WHERE id = ? AND <guards>`: returns rows updated.
fn guarded_update<C: KmsConnection>(
    conn: &mut C,
    t: &TableSpec,
    row: &Row,
    new: NewValues,
) -> Result<usize> {
    let b = C::BACKEND;
    let mut binds = vec![SqlValue::Text(Some(new.key))];
    let mut sets = vec![format!("{} = {}", b.quote(&t.key_column), b.placeholder(1))];
    let mut guards = Vec::new();
    if let Some(cols) = new.cols {
        for (a, v) in t.attributes.iter().zip(cols) {
            binds.push(col_value(a, v));
            sets.push(format!(
                "{} = {}",
                b.quote(&a.column),
                b.placeholder(binds.len())
            ));
        }
        for (a, old) in t.attributes.iter().zip(&row.cols) {
            binds.push(col_value(a, old.clone()));
            guards.push(null_safe_eq(
                b,
                &b.quote(&a.column),
                &b.placeholder(binds.len()),
            ));
        }
    }
    binds.push(SqlValue::Text(row.key.clone()));
    guards.push(format!(
        "{} = {}",
        b.quote(&t.key_column),
        b.placeholder(binds.len())
    ));
    binds.push(id_bind(t, &row.id));
    // `?` placeholders bind in text order: guards first, then the id, as the binds were pushed
    let sql = format!(
        "UPDATE {} SET {} WHERE {} AND {}",
        b.quote(&t.table),
        sets.join(", "),
        guards.join(" AND "),
        id_where(b, t, &b.placeholder(binds.len()))
    );
    conn.kms_execute(&sql, binds).map_err(Error::database)
}

/// Postgres: every row of a batch in ONE guarded `UPDATE … FROM (VALUES …) RETURNING id`;
/// returns the ids that were updated (the others lost to a concurrent writer).
fn batch_update_pg<C: KmsConnection>(
    conn: &mut C,
    t: &TableSpec,
    rows: &[(Row, NewValues)],
) -> Result<std::collections::HashSet<String>> {
    let b = C::BACKEND;
    let full = rows.first().is_some_and(|(_, n)| n.cols.is_some());
    let per_row = 3 + if full { 2 * t.attributes.len() } else { 0 };
    let mut updated = std::collections::HashSet::new();
    // Postgres allows 65535 binds per statement
    let chunk = (60_000 / per_row).max(1);
    for part in rows.chunks(chunk) {
        let mut binds = Vec::with_capacity(part.len() * per_row);
        let mut tuples = Vec::with_capacity(part.len());
        for (row, new) in part {
            let mut ph = Vec::with_capacity(per_row);
            binds.push(id_bind(t, &row.id));
            ph.push(format!(
                "{}{}",
                b.placeholder(binds.len()),
                if t.id_kind == IdKind::Integer {
                    "::bigint"
                } else {
                    "::text"
                }
            ));
            binds.push(SqlValue::Text(row.key.clone()));
            ph.push(format!("{}::text", b.placeholder(binds.len())));
            binds.push(SqlValue::Text(Some(new.key.clone())));
            ph.push(format!("{}::text", b.placeholder(binds.len())));
            if let Some(cols) = &new.cols {
                for ((a, new_v), old_v) in t.attributes.iter().zip(cols).zip(&row.cols) {
                    let cast = if a.binary { "::bytea" } else { "::text" };
                    binds.push(col_value(a, new_v.clone()));
                    ph.push(format!("{}{cast}", b.placeholder(binds.len())));
                    binds.push(col_value(a, old_v.clone()));
                    ph.push(format!("{}{cast}", b.placeholder(binds.len())));
                }
            }
            tuples.push(format!("({})", ph.join(", ")));
        }
        let mut names = vec![
            "kmsf_id".to_owned(),
            "kmsf_old".to_owned(),
            "kmsf_new".to_owned(),
        ];
        let mut sets = vec![format!("{} = v.kmsf_new", b.quote(&t.key_column))];
        let mut guards = vec![format!("t.{} = v.kmsf_old", b.quote(&t.key_column))];
        if full {
            for (i, a) in t.attributes.iter().enumerate() {
                names.push(format!("kmsf_n{i}"));
                names.push(format!("kmsf_o{i}"));
                sets.push(format!("{} = v.kmsf_n{i}", b.quote(&a.column)));
                guards.push(format!(
                    "t.{} IS NOT DISTINCT FROM v.kmsf_o{i}",
                    b.quote(&a.column)
                ));
            }
        }
        let id_match = match t.id_kind {
            IdKind::Integer => format!("t.{} = v.kmsf_id", b.quote(&t.id_column)),
            IdKind::Other => format!("CAST(t.{} AS TEXT) = v.kmsf_id", b.quote(&t.id_column)),
        };
        let sql = format!(
            "UPDATE {} AS t SET {} FROM (VALUES {}) AS v({}) WHERE {id_match} AND {} RETURNING CAST(t.{} AS TEXT) AS kmsf_id",
            b.quote(&t.table),
            sets.join(", "),
            tuples.join(", "),
            names.join(", "),
            guards.join(" AND "),
            b.quote(&t.id_column)
        );
        updated.extend(conn.kms_load_ids(&sql, binds).map_err(Error::database)?);
    }
    Ok(updated)
}

fn count<C: KmsConnection>(conn: &mut C, t: &TableSpec, filter: &str) -> Result<u64> {
    let sql = format!(
        "SELECT COUNT(*) AS n FROM {} WHERE {filter}",
        C::BACKEND.quote(&t.table)
    );
    conn.kms_count(&sql)
        .map_err(Error::database)
        .map(|n| n.max(0) as u64)
}

/// Compute new values for a batch: KMS calls concurrent, bounded and rate-limited.
fn compute<F, Fut>(
    rows: &[Row],
    opts: &TableOptions<'_>,
    limiter: &RateLimiter,
    f: F,
) -> Result<Vec<Result<NewValues>>>
where
    F: Fn(Row) -> Fut,
    Fut: std::future::Future<Output = Result<NewValues>>,
{
    blocking::block_on(async {
        futures::stream::iter(rows.iter().cloned().enumerate())
            .map(|(i, row)| {
                let fut = f(row);
                async move {
                    limiter.acquire().await;
                    (i, fut.await)
                }
            })
            .buffer_unordered(opts.concurrency.max(1))
            .collect::<Vec<_>>()
            .await
    })
    .map(|mut v| {
        v.sort_by_key(|(i, _)| *i);
        v.into_iter().map(|(_, r)| r).collect()
    })
}

/// Rotate every row of `table` whose key column is not at the current version (see the module
/// documentation).
///
/// ```no_run
/// # fn demo(conn: &mut diesel::PgConnection, kms: &kms_fields::Kms) -> kms_fields::Result<()> {
/// use kms_fields::KeySpec;
/// use kms_fields_diesel::rotation::{TableOptions, TableSpec, rotate_table};
/// let spec = KeySpec::new().key_id("alias/users-2026").version(2).previous_version(1, "alias/users");
/// let table = TableSpec::new("users", "User", "encrypted_kms_key", spec);
/// let mut report = |p: &kms_fields_diesel::rotation::Progress| eprintln!("{}/{} rows, {:.0}/s", p.done, p.total, p.rate());
/// let summary = rotate_table(conn, kms, &table, TableOptions { progress: Some(&mut report), ..Default::default() })?;
/// assert!(summary.errors.is_empty());
/// # Ok(()) }
/// ```
pub fn rotate_table<C: KmsConnection>(
    conn: &mut C,
    kms: &Kms,
    t: &TableSpec,
    mut opts: TableOptions<'_>,
) -> Result<Summary> {
    let started = Instant::now();
    let b = C::BACKEND;
    let filter = not_current(b, t);
    let total = count(conn, t, &filter)?;
    let limiter = RateLimiter::new(opts.rate_per_second);
    let mut summary = Summary::default();
    let mut after: Option<String> = None;
    let mut batches = 0;
    loop {
        if opts.max_batches.is_some_and(|m| batches >= m) {
            break;
        }
        batches += 1;
        let batch_size = opts.batch_size.max(1);
        let mode = opts.mode;
        let process = |conn: &mut C, summary: &mut Summary| -> Result<Option<String>> {
            let (sql, binds) = select_sql(b, t, &filter, after.as_deref(), batch_size, true, &[]);
            let rows = load_rows(conn, &sql, binds)?;
            let Some(last) = rows.last().map(|r| r.id.clone()) else {
                return Ok(None);
            };
            let mut pending: Vec<Row> = rows;
            for attempt in 0..opts.max_attempts.max(1) {
                if pending.is_empty() {
                    break;
                }
                let results = compute(&pending, &opts, &limiter, |row| async move {
                    rotate_row(kms, t, mode, &row).await
                })?;
                let mut ready = Vec::with_capacity(pending.len());
                for (row, result) in pending.into_iter().zip(results) {
                    match result {
                        Err(error) => summary.errors.push(RowError { id: row.id, error }),
                        Ok(new) => ready.push((row, new)),
                    }
                }
                // write the batch: one statement on Postgres, one transaction elsewhere
                let lost: Vec<Row> = if b == BackendKind::Postgres {
                    let updated = batch_update_pg(conn, t, &ready)?;
                    summary.done += updated.len() as u64;
                    ready
                        .into_iter()
                        .filter(|(r, _)| !updated.contains(&r.id))
                        .map(|(r, _)| r)
                        .collect()
                } else {
                    let mut lost = Vec::new();
                    let mut done = 0;
                    conn.transaction::<_, crate::flow::TxError, _>(|conn| {
                        for (row, new) in ready {
                            if guarded_update(conn, t, &row, new)
                                .map_err(crate::flow::TxError::Kms)?
                                == 1
                            {
                                done += 1;
                            } else {
                                lost.push(row);
                            }
                        }
                        Ok(())
                    })
                    .map_err(Error::from)?;
                    summary.done += done;
                    lost
                };
                let mut retry = Vec::new();
                for row in lost {
                    // a concurrent writer changed it: re-read, and retry unless it is done
                    let (sql, _) = select_sql(
                        b,
                        t,
                        &format!("{} = {}", id_where_literal(b, t), b.placeholder(1)),
                        None,
                        1,
                        false,
                        &[],
                    );
                    let fresh = load_rows(conn, &sql, vec![id_bind(t, &row.id)])?;
                    match fresh.into_iter().next() {
                        Some(r)
                            if r.key.is_some()
                                && r.key.as_deref().and_then(StoredKey::version_of)
                                    != Some(t.spec.current_version()) =>
                        {
                            summary.conflicts += 1;
                            retry.push(r);
                        }
                        _ => summary.skipped += 1,
                    }
                }
                pending = retry;
                if attempt + 1 == opts.max_attempts.max(1) {
                    for row in pending.drain(..) {
                        summary.errors.push(RowError {
                            id: row.id,
                            error: Error::new(
                                ErrorKind::Conflict,
                                "the row kept changing under concurrent writers",
                            ),
                        });
                    }
                }
            }
            Ok(Some(last))
        };
        let next = if b == BackendKind::Postgres {
            conn.transaction::<_, crate::flow::TxError, _>(|conn| {
                process(conn, &mut summary).map_err(crate::flow::TxError::Kms)
            })
            .map_err(Error::from)?
        } else {
            process(conn, &mut summary)?
        };
        let Some(last) = next else { break };
        after = Some(last);
        if let Some(cb) = opts.progress.as_mut() {
            cb(&Progress {
                done: summary.done,
                total,
                errors: summary.errors.len() as u64,
                conflicts: summary.conflicts,
                elapsed: started.elapsed(),
            });
        }
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// The id column, for the single-row re-read (`id = ?`).
fn id_where_literal(b: BackendKind, t: &TableSpec) -> String {
    match t.id_kind {
        IdKind::Integer => b.quote(&t.id_column),
        IdKind::Other => id_as_text(b, &b.quote(&t.id_column)),
    }
}

/// Encrypt existing plaintext columns into the key and ciphertext columns of rows that have no
/// key yet (Lockbox's `migrate`): `sources[i]` is the plaintext column of `table.attributes[i]`,
/// read as text. Each row gets a new data key (one KMS `Encrypt`), and ONE guarded
/// `UPDATE … WHERE id = ? AND <key column> IS NULL`, so a rerun continues where a killed run
/// stopped and rows the application already wrote are left alone. The plaintext columns are not
/// cleared: drop them once the application reads the encrypted ones.
pub fn backfill_table<C: KmsConnection>(
    conn: &mut C,
    kms: &Kms,
    t: &TableSpec,
    sources: &[&str],
    mut opts: TableOptions<'_>,
) -> Result<Summary> {
    if sources.len() != t.attributes.len() {
        return Err(Error::new(
            ErrorKind::Config,
            "backfill: one plaintext column per attribute",
        ));
    }
    let started = Instant::now();
    let b = C::BACKEND;
    let filter = format!(
        "{} IS NULL AND ({})",
        b.quote(&t.key_column),
        sources
            .iter()
            .map(|s| format!("{} IS NOT NULL", b.quote(s)))
            .collect::<Vec<_>>()
            .join(" OR ")
    );
    let total = count(conn, t, &filter)?;
    let limiter = RateLimiter::new(opts.rate_per_second);
    let extra: Vec<String> = sources.iter().map(|s| (*s).to_owned()).collect();
    let plain_t = TableSpec {
        attributes: Vec::new(),
        ..t.clone()
    };
    let mut summary = Summary::default();
    let mut after: Option<String> = None;
    let mut batches = 0;
    loop {
        if opts.max_batches.is_some_and(|m| batches >= m) {
            break;
        }
        batches += 1;
        let (sql, binds) = select_sql(
            b,
            &plain_t,
            &filter,
            after.as_deref(),
            opts.batch_size.max(1),
            false,
            &extra,
        );
        let rows = load_rows(conn, &sql, binds)?;
        let Some(last) = rows.last().map(|r| r.id.clone()) else {
            break;
        };
        let results = compute(&rows, &opts, &limiter, |row| async move {
            let fresh = DataKey::generate()?;
            let mut cols = Vec::with_capacity(t.attributes.len());
            for (a, plain) in t.attributes.iter().zip(&row.cols) {
                cols.push(match plain {
                    None => None,
                    Some(p) => {
                        let ct = cipher::encrypt(&fresh, p, a.options())?;
                        Some(if a.binary {
                            ct
                        } else {
                            encoding::strict_encode(&ct).into_bytes()
                        })
                    }
                });
            }
            let ctx = t.context(&row.id);
            let key = kms
                .wrap_data_key(&t.spec, None, &fresh, &move |_| Ok(Some(ctx.clone())))
                .await?;
            Ok(NewValues {
                key,
                cols: Some(cols),
            })
        })?;
        for (row, result) in rows.into_iter().zip(results) {
            match result {
                Err(error) => summary.errors.push(RowError { id: row.id, error }),
                Ok(new) => {
                    let mut binds = vec![SqlValue::Text(Some(new.key))];
                    let mut sets =
                        vec![format!("{} = {}", b.quote(&t.key_column), b.placeholder(1))];
                    for (a, v) in t.attributes.iter().zip(new.cols.unwrap_or_default()) {
                        binds.push(col_value(a, v));
                        sets.push(format!(
                            "{} = {}",
                            b.quote(&a.column),
                            b.placeholder(binds.len())
                        ));
                    }
                    binds.push(id_bind(t, &row.id));
                    let sql = format!(
                        "UPDATE {} SET {} WHERE {} AND {} IS NULL",
                        b.quote(&t.table),
                        sets.join(", "),
                        id_where(b, t, &b.placeholder(binds.len())),
                        b.quote(&t.key_column)
                    );
                    if conn.kms_execute(&sql, binds).map_err(Error::database)? == 1 {
                        summary.done += 1;
                    } else {
                        summary.skipped += 1;
                    }
                }
            }
        }
        after = Some(last);
        if let Some(cb) = opts.progress.as_mut() {
            cb(&Progress {
                done: summary.done,
                total,
                errors: summary.errors.len() as u64,
                conflicts: 0,
                elapsed: started.elapsed(),
            });
        }
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Rows per key version of a key column: `("v1:", n)`, `("NULL", n)`, `("legacy", n)`.
pub fn key_versions<C: KmsConnection>(
    conn: &mut C,
    table: &str,
    key_column: &str,
) -> Result<Vec<(String, u64)>> {
    let b = C::BACKEND;
    let k = b.quote(key_column);
    let prefix = match b {
        BackendKind::Postgres => format!("substring({k} from 1 for position(':' in {k}))"),
        BackendKind::Sqlite => format!("substr({k}, 1, instr({k}, ':'))"),
        BackendKind::Mysql => format!("SUBSTRING({k}, 1, LOCATE(':', {k}))"),
    };
    let sql = format!(
        "SELECT CASE WHEN {k} IS NULL THEN 'NULL' WHEN {k} LIKE 'v%:%' AND {k} NOT LIKE 'vault:%' THEN {prefix} ELSE 'legacy' END AS kmsf_version, COUNT(*) AS n \
         FROM {} GROUP BY 1 ORDER BY 1",
        b.quote(table)
    );
    conn.kms_group_counts(&sql).map_err(Error::database)
}
