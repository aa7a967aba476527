//! Blind indexes: find a record by an encrypted attribute (`WHERE email_bidx = ?`), with the
//! values the Ruby [blind_index](https://github.com/ankane/blind_index) gem stores.
//!
//! A blind index is a keyed, deliberately slow, deterministic hash of an attribute's plaintext,
//! stored next to its ciphertext in a `<attr>_bidx` column. Equal plaintexts give equal
//! indexes, so the application can look records up (and put a unique index on the column)
//! without decrypting anything; without the key an index reveals nothing but equality.
//!
//! **Debug builds**: the KDF crates are slow by design and ~25× slower unoptimised; your crate
//! does not inherit this workspace's profile, so add `[profile.dev.package.argon2]` (and
//! `blake2`, `sha2`) `opt-level = 3` to your `Cargo.toml`. A debug build logs a one-time
//! warning (target `kms_fields::blind_index`) when an index takes far longer than its cost
//! parameters should.
//!
//! # Algorithm (byte-compatible with the blind_index gem 2.x)
//!
//! 1. Key hierarchy (see [`IndexKey::derive`]): from one 32-byte [`MasterKey`], each index has
//!    its own key `HMAC-SHA256(root, pack([table, bidx column, bidx column]))` with
//!    `root = HKDF-SHA384(master, salt = table, info = 0x7E×32 ‖ bidx column)`. Indexes of
//!    different columns are therefore unrelated, and one leaked index key exposes one column.
//! 2. The optional [expression](Expression) normalises the value (e.g.
//!    [`normalize::trim_lowercase`]) — on write and on query.
//! 3. [`Algorithm`]: Argon2id v0x13, one lane (default t = 3, m = 4 MiB; `slow` t = 4,
//!    m = 32 MiB; or a custom cost), or PBKDF2-HMAC-SHA256 (10,000 iterations; slow 100,000);
//!    password = the value's UTF-8 bytes, salt = the index key, output = `size` bytes
//!    (1..=32, default 32; Argon2id needs at least 4, as in the gem).
//! 4. [`Encoding`]: strict base64 for text columns (default) or the raw bytes for binary ones.
//!
//! Known-answer tests (`tests/blind_index.rs`, data computed by an independent Python
//! implementation in `tests/data/`) pin every step, including the gem's documented index key.
//!
//! ```
//! use kms_fields::blind_index::{normalize, BidxValue, BlindIndex, MasterKey};
//!
//! let master = MasterKey::from_hex(&"0".repeat(64))?; // use MasterKey::from_env() or a wrapped key
//! let email = BlindIndex::builder("users", "email_bidx")
//!     .expression(normalize::trim_lowercase)
//!     .build()?;
//! let bidx = email.compute(&master, " Test@Example.ORG")?;
//! // the value the blind_index gem stores for users.email_bidx = "test@example.org"
//! assert_eq!(bidx, BidxValue::Text("kSqBXqdAhgnZAvwGcZ/17SUCg+V6t7xnJ8CO/gRDSjU=".into()));
//! assert_eq!(email.compute_text(&master, "test@example.org")?, bidx.as_str().unwrap());
//! # Ok::<(), kms_fields::Error>(())
//! ```
//!
//! # Master key
//!
//! Given as 64 hex digits ([`MasterKey::from_hex`], or [`MasterKey::from_env`] for the gem's
//! `BLIND_INDEX_MASTER_KEY`) — or, better than the gem, KMS-wrapped: store the `vN:` value of
//! [`MasterKey::wrap`] (a [`KmsBox`](crate::KmsBox) encryption) in configuration and call
//! [`MasterKey::from_wrapped`] (or [`MasterKey::resolve`], which takes either form) once at
//! start-up. The key then never sits on the application server at rest, and reading it is an
//! audited KMS `Decrypt` that can be revoked.
//!
//! ```
//! use kms_fields::blind_index::MasterKey;
//! use kms_fields::{EncryptionContext, KeySpec, Kms, KmsBox};
//!
//! let kms_box = KmsBox::new(Kms::new(), KeySpec::new().key_id("insecure-test-key"));
//! let ctx = EncryptionContext::from([("purpose", "blind_index_master_key")]);
//! // once, when provisioning: generate, wrap, store the text in your configuration
//! let wrapped = MasterKey::generate()?.wrap_blocking(&kms_box, Some(&ctx))?;
//! assert!(wrapped.starts_with("v1:"));
//! // at start-up
//! let master = MasterKey::resolve_blocking(&wrapped, &kms_box, Some(&ctx))?;
//! # let _ = master;
//! # Ok::<(), kms_fields::Error>(())
//! ```
//!
//! # Cost and the async runtime
//!
//! Argon2id takes milliseconds of CPU and megabytes of memory per value, by design.
//! [`BlindIndex::compute`] runs on the calling thread: fine in synchronous code (Diesel), but
//! it stalls a tokio worker. In async code use [`compute_async`](BlindIndex::compute_async) and
//! [`compute_many_async`](BlindIndex::compute_many_async), which run on tokio's blocking pool,
//! at most [`max_parallelism`](BlindIndexBuilder::max_parallelism) computations of an index
//! at once (default: the number of CPUs), so bulk inserts and backfills neither starve the
//! runtime nor allocate unbounded memory. The per-index key is derived once per master key and
//! cached in the [`BlindIndex`].
//!
//! # Queries, uniqueness and NULL
//!
//! To find a record, compute the index of the searched value and compare columns:
//! `WHERE email_bidx = $1`; for an `IN` list, [`compute_many`](BlindIndex::compute_many).
//! A unique database index on the bidx column enforces uniqueness of the (normalised)
//! attribute. A NULL attribute has a NULL index ([`compute_option`](BlindIndex::compute_option));
//! the empty string has an index. Several indexes per attribute (exact and case-insensitive)
//! are simply several [`BlindIndex`]es over different columns.
//!
//! # Rotation
//!
//! An index cannot be re-keyed in place (its input is the plaintext). To change the master
//! key, the algorithm, cost, size or expression:
//!
//! 1. add a column `<attr>_bidx_v2` (nullable, indexed) and a second [`BlindIndex`] for it
//!    with the new settings (its key derives from the new master key and the new column name);
//! 2. write both columns on every save, keep querying `<attr>_bidx`;
//! 3. backfill `<attr>_bidx_v2` for existing rows in primary-key batches (decrypt, then
//!    [`compute_many_async`](BlindIndex::compute_many_async)), resumable by selecting rows
//!    where it is still NULL;
//! 4. switch queries (and the unique index) to `<attr>_bidx_v2`, stop writing the old column,
//!    then drop it and retire the old master key.

mod algorithm;
mod key;
pub mod normalize;

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use futures::{StreamExt as _, TryStreamExt as _};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};

pub use algorithm::{Algorithm, Encoding};
pub use key::{IndexKey, KEY_LEN, MASTER_KEY_ENV, MasterKey};

/// The default output size in bytes.
pub const DEFAULT_SIZE: usize = 32;
/// The largest output size in bytes.
pub const MAX_SIZE: usize = 32;

/// A normalising expression applied to a value before it is hashed (see [`normalize`]).
/// Any `fn(&str) -> String` or non-capturing closure.
pub type Expression = fn(&str) -> String;

/// A computed blind index, in its column's form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BidxValue {
    /// Base64 text, for a text column ([`Encoding::Base64`], [`Encoding::LegacyBase64`]).
    Text(String),
    /// Raw bytes, for a binary column ([`Encoding::Raw`]).
    Binary(Vec<u8>),
}

impl BidxValue {
    /// The bytes to store: the text's UTF-8 bytes, or the raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(s) => s.as_bytes(),
            Self::Binary(b) => b,
        }
    }

    /// The text, if this is a text index.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Text(s) => Some(s),
            Self::Binary(_) => None,
        }
    }

    /// The text, if this is a text index.
    pub fn into_string(self) -> Option<String> {
        match self {
            Self::Text(s) => Some(s),
            Self::Binary(_) => None,
        }
    }

    /// The bytes to store (see [`as_bytes`](Self::as_bytes)).
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Self::Text(s) => s.into_bytes(),
            Self::Binary(b) => b,
        }
    }
}

/// An index key and the identity of the master key it was derived from.
type CachedKey = (u64, Arc<IndexKey>);

/// How one index's values are computed (everything but the names and the key).
#[derive(Clone, Copy)]
struct Spec {
    algorithm: Algorithm,
    size: usize,
    encoding: Encoding,
    expression: Option<Expression>,
}

impl Spec {
    fn compute(&self, key: &IndexKey, value: &str) -> Result<BidxValue> {
        let normalized;
        let input: &str = match self.expression {
            Some(expression) => {
                normalized = Zeroizing::new(expression(value));
                &normalized
            }
            None => value,
        };
        let mut out = vec![0u8; self.size];
        self.algorithm.hash(key, input.as_bytes(), &mut out)?;
        Ok(self.encoding.encode(out))
    }
}

/// One blind index: the table and bidx column it belongs to (they select its key), its
/// [`Algorithm`] and cost, output size, [`Encoding`] and optional [`Expression`].
/// Build with [`BlindIndex::builder`]; a built index is valid, cheap to clone (clones share
/// the cached key and the parallelism bound), `Send + Sync`, and meant to live for the
/// process (e.g. in a `static LazyLock`).
///
/// ```
/// use kms_fields::blind_index::{Algorithm, BlindIndex, Encoding, MasterKey};
///
/// let master = MasterKey::generate()?;
/// let index = BlindIndex::builder("users", "email_bidx")
///     .algorithm(Algorithm::PBKDF2_SHA256)
///     .size(16)
///     .encoding(Encoding::Raw)
///     .build()?;
/// let a = index.compute_binary(&master, "ada@example.org")?;
/// assert_eq!(a.len(), 16);
/// assert_eq!(index.compute_many(&master, ["ada@example.org", "bob@example.org"])?[0].as_bytes(), a);
/// assert_eq!(index.compute_option(&master, None)?, None);
///
/// // invalid options are errors, not panics
/// let err = BlindIndex::builder("users", "email_bidx").size(33).build().unwrap_err();
/// assert_eq!(err.kind(), kms_fields::ErrorKind::Config);
/// # Ok::<(), kms_fields::Error>(())
/// ```
pub struct BlindIndex {
    table: Cow<'static, str>,
    column: Cow<'static, str>,
    spec: Spec,
    max_parallelism: usize,
    limiter: Arc<Semaphore>,
    cache: Arc<Mutex<Option<CachedKey>>>,
}

impl BlindIndex {
    /// Start describing the index stored in `bidx_column` of `table` (the gem's
    /// `bidx_attribute`, by default `<attr>_bidx`). Both names take part in the key derivation:
    /// they must be the names the gem used for its values to match.
    pub fn builder(
        table: impl Into<Cow<'static, str>>,
        bidx_column: impl Into<Cow<'static, str>>,
    ) -> BlindIndexBuilder {
        BlindIndexBuilder {
            table: table.into(),
            column: bidx_column.into(),
            algorithm: Algorithm::default(),
            size: DEFAULT_SIZE,
            encoding: Encoding::default(),
            expression: None,
            max_parallelism: None,
        }
    }

    /// An index with the gem's defaults (Argon2id, 32 bytes, strict base64, no expression).
    pub fn new(
        table: impl Into<Cow<'static, str>>,
        bidx_column: impl Into<Cow<'static, str>>,
    ) -> Result<Self> {
        Self::builder(table, bidx_column).build()
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The bidx column name.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// The algorithm and its cost.
    pub fn algorithm(&self) -> Algorithm {
        self.spec.algorithm
    }

    /// The output size in bytes (before encoding).
    pub fn size(&self) -> usize {
        self.spec.size
    }

    /// The encoding of the stored value.
    pub fn encoding(&self) -> Encoding {
        self.spec.encoding
    }

    /// The normalising expression, if any.
    pub fn expression(&self) -> Option<Expression> {
        self.spec.expression
    }

    /// The most computations of this index that [`compute_async`](Self::compute_async) and
    /// [`compute_many_async`](Self::compute_many_async) run at once.
    pub fn max_parallelism(&self) -> usize {
        self.max_parallelism
    }

    /// This index's key under `master` (derived once per master key, then cached).
    pub fn index_key(&self, master: &MasterKey) -> Result<IndexKey> {
        Ok(IndexKey::clone(&*self.cached_key(master)?))
    }

    fn cached_key(&self, master: &MasterKey) -> Result<Arc<IndexKey>> {
        let mut slot = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((id, key)) = slot.as_ref()
            && *id == master.id()
        {
            return Ok(Arc::clone(key));
        }
        let key = Arc::new(IndexKey::derive(master, &self.table, &self.column)?);
        *slot = Some((master.id(), Arc::clone(&key)));
        Ok(key)
    }

    fn located(&self, e: Error) -> Error {
        e.context(format_args!("blind index {}.{}", self.table, self.column))
    }

    /// The index of `value`, on the calling thread (blocking it for the algorithm's cost; in
    /// async code prefer [`compute_async`](Self::compute_async)).
    pub fn compute(&self, master: &MasterKey, value: &str) -> Result<BidxValue> {
        let key = self.cached_key(master)?;
        self.compute_with_key(&key, value)
    }

    /// [`compute`](Self::compute) with an index key given directly (the gem's `key:` option,
    /// or a key from [`index_key`](Self::index_key)).
    pub fn compute_with_key(&self, key: &IndexKey, value: &str) -> Result<BidxValue> {
        self.spec.compute(key, value).map_err(|e| self.located(e))
    }

    /// NULL in, NULL out: the index of `Some(value)`, or `None`.
    pub fn compute_option(
        &self,
        master: &MasterKey,
        value: Option<&str>,
    ) -> Result<Option<BidxValue>> {
        value.map(|v| self.compute(master, v)).transpose()
    }

    /// The index of `value` as text, for a text column; a [`Config`](ErrorKind::Config) error
    /// if this index is [`Encoding::Raw`].
    pub fn compute_text(&self, master: &MasterKey, value: &str) -> Result<String> {
        self.expect_text(true)?;
        self.compute(master, value)?
            .into_string()
            .ok_or_else(|| self.located(Error::config("produced bytes, not text")))
    }

    /// The index of `value` as bytes, for a binary column; a [`Config`](ErrorKind::Config)
    /// error unless this index is [`Encoding::Raw`].
    pub fn compute_binary(&self, master: &MasterKey, value: &str) -> Result<Vec<u8>> {
        self.expect_text(false)?;
        Ok(self.compute(master, value)?.into_bytes())
    }

    fn expect_text(&self, text: bool) -> Result<()> {
        if self.spec.encoding.is_text() == text {
            return Ok(());
        }
        let (want, have) = if text {
            ("text", "Encoding::Raw (bytes)")
        } else {
            ("bytes", "a text encoding")
        };
        Err(self.located(Error::config(format!(
            "asked for {want}, but the index uses {have}"
        ))))
    }

    /// The indexes of several values (an `IN (…)` list), in order, on the calling thread.
    pub fn compute_many<I, S>(&self, master: &MasterKey, values: I) -> Result<Vec<BidxValue>>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let key = self.cached_key(master)?;
        values
            .into_iter()
            .map(|v| self.compute_with_key(&key, v.as_ref()))
            .collect()
    }

    /// [`compute`](Self::compute) on tokio's blocking pool (within this index's parallelism
    /// bound): the runtime keeps serving other tasks meanwhile. Needs a tokio runtime (either
    /// flavour); outside one it is a [`Runtime`](ErrorKind::Runtime) error.
    pub async fn compute_async(&self, master: &MasterKey, value: &str) -> Result<BidxValue> {
        let key = self.cached_key(master)?;
        let handle = runtime_handle()?;
        let value = Zeroizing::new(value.to_owned());
        self.run_blocking(&handle, key, value)
            .await
            .map_err(|e| self.located(e))
    }

    /// [`compute_many`](Self::compute_many) on tokio's blocking pool, up to
    /// [`max_parallelism`](Self::max_parallelism) values at once; results in input order.
    /// For bulk inserts, backfills and `IN` lists from async code.
    ///
    /// ```
    /// use kms_fields::blind_index::{BlindIndex, MasterKey};
    ///
    /// kms_fields::blocking::run(async {
    ///     let master = MasterKey::generate()?;
    ///     let index = BlindIndex::new("users", "email_bidx")?;
    ///     // the values for `WHERE email_bidx IN ($1, $2)`
    ///     let bidx = index.compute_many_async(&master, ["a@example.org", "b@example.org"]).await?;
    ///     assert_eq!(bidx[1], index.compute_async(&master, "b@example.org").await?);
    ///     Ok::<(), kms_fields::Error>(())
    /// })?;
    /// # Ok::<(), kms_fields::Error>(())
    /// ```
    pub async fn compute_many_async<I, S>(
        &self,
        master: &MasterKey,
        values: I,
    ) -> Result<Vec<BidxValue>>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let key = self.cached_key(master)?;
        let handle = runtime_handle()?;
        let values: Vec<Zeroizing<String>> = values
            .into_iter()
            .map(|v| Zeroizing::new(v.as_ref().to_owned()))
            .collect();
        futures::stream::iter(values)
            .map(|value| self.run_blocking(&handle, Arc::clone(&key), value))
            .buffered(self.max_parallelism)
            .try_collect()
            .await
            .map_err(|e| self.located(e))
    }

    async fn run_blocking(
        &self,
        handle: &tokio::runtime::Handle,
        key: Arc<IndexKey>,
        value: Zeroizing<String>,
    ) -> Result<BidxValue> {
        let permit = Arc::clone(&self.limiter)
            .acquire_owned()
            .await
            .map_err(|_| Error::new(ErrorKind::Runtime, "the parallelism limiter was closed"))?;
        let spec = self.spec;
        handle
            .spawn_blocking(move || {
                let _permit = permit;
                spec.compute(&key, &value)
            })
            .await
            .map_err(|e| {
                let what = if e.is_panic() {
                    "panicked"
                } else {
                    "was cancelled"
                };
                Error::new(
                    ErrorKind::Runtime,
                    format!("the blocking computation {what}"),
                )
            })?
    }
}

fn runtime_handle() -> Result<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current().map_err(|_| {
        Error::new(
            ErrorKind::Runtime,
            "the async blind index methods need a tokio runtime: call them from a tokio task, \
             or use the synchronous compute methods",
        )
    })
}

impl Clone for BlindIndex {
    /// A handle on the same index: the cached key and the parallelism bound are shared.
    fn clone(&self) -> Self {
        Self {
            table: self.table.clone(),
            column: self.column.clone(),
            spec: self.spec,
            max_parallelism: self.max_parallelism,
            limiter: Arc::clone(&self.limiter),
            cache: Arc::clone(&self.cache),
        }
    }
}

impl fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlindIndex")
            .field("table", &self.table)
            .field("column", &self.column)
            .field("algorithm", &self.spec.algorithm)
            .field("size", &self.spec.size)
            .field("encoding", &self.spec.encoding)
            .field("expression", &self.spec.expression.map(|_| "fn"))
            .field("max_parallelism", &self.max_parallelism)
            .finish_non_exhaustive()
    }
}

/// Options of a [`BlindIndex`]; [`build`](Self::build) checks them.
#[derive(Debug, Clone)]
#[must_use]
pub struct BlindIndexBuilder {
    table: Cow<'static, str>,
    column: Cow<'static, str>,
    algorithm: Algorithm,
    size: usize,
    encoding: Encoding,
    expression: Option<Expression>,
    max_parallelism: Option<usize>,
}

impl BlindIndexBuilder {
    /// The algorithm and cost (default [`Algorithm::ARGON2ID`]; the gem's `slow: true` is
    /// [`Algorithm::ARGON2ID_SLOW`]).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The output size in bytes, 1..=32 (Argon2id: 4..=32); default 32.
    pub fn size(mut self, size: usize) -> Self {
        self.size = size;
        self
    }

    /// The stored form (default [`Encoding::Base64`]).
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// A normalising expression applied before hashing, e.g. [`normalize::trim_lowercase`].
    pub fn expression(mut self, expression: Expression) -> Self {
        self.expression = Some(expression);
        self
    }

    /// At most `n` (≥ 1) computations of this index at once on the blocking pool (default:
    /// the number of CPUs). Each Argon2id computation holds its `m` memory while it runs.
    pub fn max_parallelism(mut self, n: usize) -> Self {
        self.max_parallelism = Some(n);
        self
    }

    /// Check the options: non-empty names, a size in range for the algorithm, a valid cost.
    /// Errors are [`Config`](ErrorKind::Config) errors naming the index.
    pub fn build(self) -> Result<BlindIndex> {
        let at = || format!("blind index {}.{}", self.table, self.column);
        if self.table.is_empty() || self.column.is_empty() {
            return Err(Error::config(
                "blind index: the table and the bidx column must be named",
            ));
        }
        if !(1..=MAX_SIZE).contains(&self.size) {
            return Err(Error::config(format!(
                "size must be between 1 and {MAX_SIZE}, got {}",
                self.size
            ))
            .context(at()));
        }
        let min = self.algorithm.min_size();
        if self.size < min {
            return Err(Error::config(format!(
                "{:?} cannot produce fewer than {min} bytes, got size {} (the gem fails too: \
                 \"Output is too short\"); use a size of at least {min} or PBKDF2",
                self.algorithm, self.size
            ))
            .context(at()));
        }
        self.algorithm
            .validate()
            .map_err(|m| Error::config(m).context(at()))?;
        let max_parallelism = match self.max_parallelism {
            Some(0) => {
                return Err(Error::config("max_parallelism must be at least 1").context(at()));
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        Ok(BlindIndex {
            table: self.table,
            column: self.column,
            spec: Spec {
                algorithm: self.algorithm,
                size: self.size,
                encoding: self.encoding,
                expression: self.expression,
            },
            max_parallelism,
            limiter: Arc::new(Semaphore::new(max_parallelism)),
            cache: Arc::new(Mutex::new(None)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_hex(&"0".repeat(64)).unwrap()
    }

    #[test]
    fn sizes_are_checked() {
        for size in [0, 33, 1000] {
            let e = BlindIndex::builder("users", "email_bidx")
                .size(size)
                .build()
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            assert!(
                e.to_string()
                    .starts_with("blind index users.email_bidx: size"),
                "{e}"
            );
        }
        for size in [1, 2, 3] {
            let e = BlindIndex::builder("users", "email_bidx")
                .size(size)
                .build()
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{e}");
            BlindIndex::builder("users", "email_bidx")
                .algorithm(Algorithm::PBKDF2_SHA256)
                .size(size)
                .build()
                .unwrap();
        }
    }

    #[test]
    fn costs_are_checked() {
        for algorithm in [
            Algorithm::argon2id(0, 4096),
            Algorithm::argon2id(3, 7),
            Algorithm::pbkdf2_sha256(0),
        ] {
            let e = BlindIndex::builder("t", "c_bidx")
                .algorithm(algorithm)
                .build()
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        }
        assert_eq!(
            Algorithm::argon2id_gem_cost(3, 12).unwrap(),
            Algorithm::ARGON2ID
        );
        assert_eq!(
            Algorithm::argon2id_gem_cost(4, 15).unwrap(),
            Algorithm::ARGON2ID_SLOW
        );
        assert!(Algorithm::argon2id_gem_cost(2, 12).is_err());
        assert!(Algorithm::argon2id_gem_cost(3, 23).is_err());
        let e = BlindIndex::builder("t", "c_bidx")
            .max_parallelism(0)
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let e = BlindIndex::builder("", "c_bidx").build().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
    }

    #[test]
    fn key_is_cached_per_master_identity() {
        let index = BlindIndex::builder("users", "email_bidx")
            .algorithm(Algorithm::pbkdf2_sha256(1))
            .build()
            .unwrap();
        let m = master();
        let k1 = index.cached_key(&m).unwrap();
        let k2 = index.clone().cached_key(&m.clone()).unwrap();
        assert!(
            Arc::ptr_eq(&k1, &k2),
            "clones share the cache and the identity"
        );
        let other = MasterKey::generate().unwrap();
        let k3 = index.cached_key(&other).unwrap();
        assert_ne!(*k1, *k3);
        // switching back re-derives the right key
        assert_eq!(*index.cached_key(&m).unwrap(), *k1);
    }

    #[test]
    fn encoding_mismatch_is_a_config_error() {
        let text = BlindIndex::builder("users", "email_bidx")
            .algorithm(Algorithm::pbkdf2_sha256(1))
            .build()
            .unwrap();
        let e = text.compute_binary(&master(), "x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let raw = BlindIndex::builder("users", "email_bidx")
            .algorithm(Algorithm::pbkdf2_sha256(1))
            .encoding(Encoding::Raw)
            .build()
            .unwrap();
        assert_eq!(
            raw.compute_text(&master(), "x").unwrap_err().kind(),
            ErrorKind::Config
        );
        assert_eq!(raw.compute_binary(&master(), "x").unwrap().len(), 32);
    }

    #[test]
    fn async_outside_a_runtime_is_an_error() {
        let index = BlindIndex::new("users", "email_bidx").unwrap();
        let e = futures::executor::block_on(index.compute_async(&master(), "x")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Runtime);
    }

    #[test]
    fn futures_are_send() {
        fn assert_send<T: Send>(_: T) {}
        fn assert_sync<T: Send + Sync>() {}
        assert_sync::<BlindIndex>();
        assert_sync::<MasterKey>();
        let index = BlindIndex::new("users", "email_bidx").unwrap();
        let m = master();
        assert_send(index.compute_async(&m, "x"));
        assert_send(index.compute_many_async(&m, vec!["x".to_owned()]));
    }

    #[test]
    fn debug_shows_no_key() {
        let index = BlindIndex::builder("users", "email_bidx")
            .expression(normalize::lowercase)
            .build()
            .unwrap();
        index.cached_key(&master()).unwrap();
        let debug = format!("{index:?}");
        assert!(
            debug.contains("email_bidx") && debug.contains("Some(\"fn\")"),
            "{debug}"
        );
        assert!(!debug.contains("2897"), "{debug}");
    }
}
