//! [`Kms`]: the provider registry every operation goes through, with audit events and counts.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use zeroize::Zeroizing;

use crate::audit::{CallStats, Operation};
use crate::context::EncryptionContext;
use crate::data_key::DataKey;
use crate::envelope::{Legacy, StoredKey};
use crate::error::{Error, ErrorKind, Result};
use crate::keyring::{KeySpec, KeyVersion};
use crate::provider::{KeyRef, LocalKey, Provider, ProviderKind, TestKey};

/// The context of a key for a given version (kms_encrypted's per-version context method).
/// `Ok(None)` means "no context at all".
pub type ContextFn<'a> = dyn Fn(u32) -> Result<Option<EncryptionContext>> + Send + Sync + 'a;

/// The handle to the key management services: one provider per family, the call counters and
/// audit events. Cheap to clone; share one per application (no global state).
///
/// ```
/// use kms_fields::{Kms, KeySpec, EncryptionContext, DataKey};
/// # kms_fields::blocking::block_on(async {
/// let kms = Kms::new();
/// let spec = KeySpec::new().key_id("insecure-test-key");
/// let ctx = EncryptionContext::for_model("User", 1);
/// let key = DataKey::generate()?;
/// let stored = kms.wrap_data_key(&spec, None, &key, &|_| Ok(Some(ctx.clone()))).await?;
/// assert!(stored.starts_with("v1:"));
/// let back = kms.unwrap_data_key(&spec, None, &stored, &|_| Ok(Some(ctx.clone()))).await?;
/// assert_eq!(back, key);
/// assert_eq!((kms.stats().encrypts(), kms.stats().decrypts()), (1, 1));
/// # Ok::<(), kms_fields::Error>(())
/// # }).unwrap().unwrap();
/// ```
#[derive(Clone)]
pub struct Kms {
    inner: Arc<Inner>,
    limiter: Option<Arc<crate::rate_limit::RateLimiter>>,
    tx_deadline: std::time::Duration,
}

/// The environment variable that enables the insecure test key in [`Kms::from_env`] (`1`).
pub const INSECURE_TEST_KEY_ENV: &str = "KMS_FIELDS_INSECURE_TEST_KEY";

/// The default of [`Kms::with_transaction_deadline`].
pub const DEFAULT_TRANSACTION_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

struct Inner {
    /// `None` unless enabled ([`KmsBuilder::insecure_test_key`], [`Kms::new`]).
    test: Option<Arc<dyn Provider>>,
    local: Arc<dyn Provider>,
    aws: Option<Arc<dyn Provider>>,
    vault: Option<Arc<dyn Provider>>,
    gcp: Option<Arc<dyn Provider>>,
    stats: CallStats,
    #[cfg(feature = "cache")]
    cache: Option<crate::cache::DecryptCache>,
    blind_index_keys: BlindIndexKeys,
}

/// The blind-index master keys of a [`Kms`]: the default one and named ones (index rotation).
type BlindIndexKeys = std::collections::BTreeMap<String, crate::blind_index::MasterKey>;

/// Builds a [`Kms`].
#[derive(Default)]
pub struct KmsBuilder {
    test: Option<Arc<dyn Provider>>,
    local: Option<Arc<dyn Provider>>,
    aws: Option<Arc<dyn Provider>>,
    vault: Option<Arc<dyn Provider>>,
    gcp: Option<Arc<dyn Provider>>,
    #[cfg(feature = "cache")]
    cache: Option<crate::cache::DecryptCache>,
    blind_index_keys: BlindIndexKeys,
}

impl fmt::Debug for KmsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsBuilder").finish_non_exhaustive()
    }
}

impl KmsBuilder {
    /// Enable the offline test key (`insecure-test-key`, [`TestKey`]) — for tests and examples
    /// only: it has no secrecy (anyone can unwrap what it wraps). Without it (or
    /// [`test_key`](Self::test_key)) a key id naming the test key is a `Config` error, so a
    /// production deployment whose `KMS_KEY_ID` is wrong fails loudly instead of "encrypting"
    /// with a public key. [`Kms::new`] enables it.
    ///
    /// ```
    /// use kms_fields::{DataKey, EncryptionContext, ErrorKind, KeySpec, Kms};
    /// # kms_fields::blocking::block_on(async {
    /// let spec = KeySpec::new().key_id("insecure-test-key");
    /// let ctx = |_| Ok(Some(EncryptionContext::for_model("User", 1)));
    /// let key = DataKey::generate()?;
    /// let production = Kms::builder().build();
    /// let e = production.wrap_data_key(&spec, None, &key, &ctx).await.unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::Config);
    /// let tests = Kms::builder().insecure_test_key().build();
    /// assert!(tests.wrap_data_key(&spec, None, &key, &ctx).await.is_ok());
    /// # Ok::<(), kms_fields::Error>(())
    /// # }).unwrap().unwrap();
    /// ```
    pub fn insecure_test_key(mut self) -> Self {
        self.test = Some(Arc::new(TestKey));
        self
    }
    /// Enable the test key with a provider of its own (e.g. a latency or fault wrapper around
    /// [`TestKey`]); the same caveat as [`insecure_test_key`](Self::insecure_test_key).
    pub fn test_key(mut self, p: impl Provider + 'static) -> Self {
        self.test = Some(Arc::new(p));
        self
    }
    /// The provider for `local/…` key ids (default: [`LocalKey::from_env`]).
    pub fn local(mut self, p: impl Provider + 'static) -> Self {
        self.local = Some(Arc::new(p));
        self
    }
    /// The provider for AWS key ids.
    pub fn aws(mut self, p: impl Provider + 'static) -> Self {
        self.aws = Some(Arc::new(p));
        self
    }
    /// The provider for `vault/…` key ids.
    pub fn vault(mut self, p: impl Provider + 'static) -> Self {
        self.vault = Some(Arc::new(p));
        self
    }
    /// The provider for `projects/…` key ids.
    pub fn gcp(mut self, p: impl Provider + 'static) -> Self {
        self.gcp = Some(Arc::new(p));
        self
    }
    /// Set any family's provider from a shared handle.
    pub fn provider(mut self, kind: ProviderKind, p: Arc<dyn Provider>) -> Self {
        let slot = match kind {
            ProviderKind::Test => &mut self.test,
            ProviderKind::Local => &mut self.local,
            ProviderKind::Aws => &mut self.aws,
            ProviderKind::Vault => &mut self.vault,
            ProviderKind::Gcp => &mut self.gcp,
        };
        *slot = Some(p);
        self
    }
    /// Cache unwrapped data keys (feature `cache`; see [`crate::cache`] for the trade-off).
    #[cfg(feature = "cache")]
    pub fn decrypt_cache(mut self, cache: crate::cache::DecryptCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The blind-index master key of indexes without a `master_key` name (see
    /// [`crate::blind_index`]). [`Kms::from_env`] reads `BLIND_INDEX_MASTER_KEY`.
    pub fn blind_index_key(self, key: crate::blind_index::MasterKey) -> Self {
        self.blind_index_key_named("", key)
    }

    /// A named blind-index master key, for indexes declared with `master_key = "name"` — e.g.
    /// the new key of an index being rotated into a second column.
    pub fn blind_index_key_named(
        mut self,
        name: impl Into<String>,
        key: crate::blind_index::MasterKey,
    ) -> Self {
        self.blind_index_keys.insert(name.into(), key);
        self
    }

    /// Build.
    pub fn build(self) -> Kms {
        Kms {
            limiter: None,
            tx_deadline: DEFAULT_TRANSACTION_DEADLINE,
            inner: Arc::new(Inner {
                test: self.test,
                local: self.local.unwrap_or_else(|| Arc::new(LocalKey::from_env())),
                aws: self.aws,
                vault: self.vault,
                gcp: self.gcp,
                stats: CallStats::default(),
                #[cfg(feature = "cache")]
                cache: self.cache,
                blind_index_keys: self.blind_index_keys,
            }),
        }
    }
}

impl Default for Kms {
    fn default() -> Self {
        Self::new()
    }
}

impl Kms {
    /// The test key and local keys from the environment; no network provider. For tests and
    /// examples: the test key is enabled (see [`KmsBuilder::insecure_test_key`]).
    pub fn new() -> Self {
        Self::builder().insecure_test_key().build()
    }

    /// Start configuring.
    pub fn builder() -> KmsBuilder {
        KmsBuilder::default()
    }

    /// Every compiled-in provider configured from the standard environment: AWS from the
    /// default credential chain, region and `AWS_ENDPOINT_URL` (feature `aws`, created on first
    /// use), Vault from `VAULT_ADDR` / `VAULT_TOKEN` / `VAULT_NAMESPACE` (feature `vault`, when
    /// `VAULT_ADDR` is set), Google Cloud KMS with Application Default Credentials (feature
    /// `gcp`, created on first use), local keys from `KMS_FIELDS_LOCAL_KEY_*`, the blind-index
    /// master key from `BLIND_INDEX_MASTER_KEY`. The insecure test key only when
    /// `KMS_FIELDS_INSECURE_TEST_KEY=1` (see [`KmsBuilder::insecure_test_key`]).
    ///
    /// Every variable that is set is checked now: a malformed one is a `Config` error naming
    /// the variable and what is wrong with it (never ignored, never reported later as missing).
    ///
    /// ```
    /// let kms = kms_fields::Kms::from_env()?; // e.g. `BLIND_INDEX_MASTER_KEY=xyz`: an error
    /// # let _ = kms;
    /// # Ok::<(), kms_fields::Error>(())
    /// ```
    pub fn from_env() -> Result<Self> {
        #[allow(unused_mut)]
        let mut b = Self::builder();
        match std::env::var(INSECURE_TEST_KEY_ENV).as_deref() {
            Ok("1" | "true") => b = b.insecure_test_key(),
            Ok("0" | "false" | "") | Err(std::env::VarError::NotPresent) => {}
            Ok(_) | Err(std::env::VarError::NotUnicode(_)) => {
                return Err(Error::config(format!(
                    "{INSECURE_TEST_KEY_ENV} must be 1 (enable the insecure test key, tests only) or 0"
                )));
            }
        }
        crate::provider::LocalKey::check_env()?;
        #[cfg(feature = "aws")]
        {
            b = b.aws(crate::provider::aws::AwsProvider::lazy_from_env());
        }
        #[cfg(feature = "vault")]
        if std::env::var_os("VAULT_ADDR").is_some_and(|v| !v.is_empty()) {
            let vault = crate::provider::vault::VaultProvider::from_env().map_err(|e| {
                Error::config(format!(
                    "Vault from the environment (VAULT_ADDR is set): {}",
                    e.message()
                ))
            })?;
            b = b.vault(vault);
        }
        #[cfg(feature = "gcp")]
        {
            b = b.gcp(crate::provider::gcp::GcpProvider::lazy_from_env());
        }
        if std::env::var_os(crate::blind_index::MASTER_KEY_ENV).is_some() {
            b = b.blind_index_key(crate::blind_index::MasterKey::from_env()?);
        }
        Ok(b.build())
    }

    /// The same providers, counters and cache, with every KMS request made through the returned
    /// handle spaced to at most `per_second` requests per second (KMS quotas; a Vault batch is
    /// one request). A rate that is not a positive number means no limit.
    ///
    /// ```
    /// # kms_fields::blocking::block_on(async {
    /// use kms_fields::{DataKey, EncryptionContext, KeySpec, Kms};
    /// let kms = Kms::new();
    /// let slow = kms.with_rate_limit(100.0);
    /// let spec = KeySpec::new().key_id("insecure-test-key");
    /// let ctx = EncryptionContext::for_model("User", 1);
    /// let started = std::time::Instant::now();
    /// for _ in 0..3 {
    ///     slow.wrap_data_key(&spec, None, &DataKey::generate()?, &|_| Ok(Some(ctx.clone()))).await?;
    /// }
    /// assert!(started.elapsed() >= std::time::Duration::from_millis(20)); // 3 calls, 10 ms apart
    /// assert_eq!(kms.stats().encrypts(), 3); // counted on the shared counters
    /// # Ok::<(), kms_fields::Error>(())
    /// # }).unwrap().unwrap();
    /// ```
    pub fn with_rate_limit(&self, per_second: f64) -> Kms {
        Kms {
            inner: self.inner.clone(),
            limiter: crate::rate_limit::RateLimiter::new(per_second).map(Arc::new),
            tx_deadline: self.tx_deadline,
        }
    }

    /// The same `Kms` with another deadline for the KMS calls a save makes while it holds a
    /// database transaction open (the after-insert flow of SQLite and MySQL; default
    /// [`DEFAULT_TRANSACTION_DEADLINE`], 2 s). When the calls take longer, the transaction is
    /// rolled back at once — another writer of the table never waits for a hanging KMS longer
    /// than this — and the whole transaction is tried again (three times in all) when the
    /// failure is retryable.
    ///
    /// ```
    /// use std::time::Duration;
    /// let kms = kms_fields::Kms::new().with_transaction_deadline(Duration::from_millis(500));
    /// assert_eq!(kms.transaction_deadline(), Duration::from_millis(500));
    /// ```
    pub fn with_transaction_deadline(&self, deadline: std::time::Duration) -> Kms {
        Kms {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            tx_deadline: deadline,
        }
    }

    /// The deadline of KMS calls inside a database transaction (see
    /// [`with_transaction_deadline`](Self::with_transaction_deadline)).
    pub fn transaction_deadline(&self) -> std::time::Duration {
        self.tx_deadline
    }

    /// The blind-index master key named `name` (`None`: the default one), or a `Config` error
    /// saying how to configure it.
    pub fn blind_index_key(&self, name: Option<&str>) -> Result<&crate::blind_index::MasterKey> {
        let name = name.unwrap_or("");
        self.inner.blind_index_keys.get(name).ok_or_else(|| {
            let (what, how) = if name.is_empty() {
                (
                    "no blind-index master key".to_owned(),
                    "Kms::builder().blind_index_key(MasterKey::from_env()?), or set BLIND_INDEX_MASTER_KEY for Kms::from_env()".to_owned(),
                )
            } else {
                (
                    format!("no blind-index master key named {name:?}"),
                    format!("Kms::builder().blind_index_key_named({name:?}, key)"),
                )
            };
            Error::new(ErrorKind::Config, format!("{what}: configure it with {how}"))
        })
    }

    /// The call counters.
    pub fn stats(&self) -> &CallStats {
        &self.inner.stats
    }

    /// The provider serving `key_id` (a version's own provider wins).
    pub fn provider_for(&self, version: &KeyVersion) -> Result<Arc<dyn Provider>> {
        if let Some(p) = &version.provider {
            return Ok(p.clone());
        }
        let kind = ProviderKind::for_key_id(&version.key_id);
        let slot = match kind {
            ProviderKind::Test => {
                return self.inner.test.clone().ok_or_else(|| {
                    Error::new(
                        ErrorKind::Config,
                        format!(
                            "key id {}: the insecure test key is not enabled on this Kms — it has no secrecy. In production configure a real key id (is KMS_KEY_ID right?); in tests and examples use Kms::new(), Kms::builder().insecure_test_key() or {INSECURE_TEST_KEY_ENV}=1",
                            version.key_id
                        ),
                    )
                });
            }
            ProviderKind::Local => Some(&self.inner.local),
            ProviderKind::Aws => self.inner.aws.as_ref(),
            ProviderKind::Vault => self.inner.vault.as_ref(),
            ProviderKind::Gcp => self.inner.gcp.as_ref(),
        };
        slot.cloned().ok_or_else(|| {
            let feature = match kind {
                ProviderKind::Aws => "aws",
                ProviderKind::Vault => "vault",
                _ => "gcp",
            };
            Error::new(
                ErrorKind::ProviderUnavailable,
                format!(
                    "key id {} needs the {kind} provider: enable the `{feature}` feature of kms-fields and configure it on the Kms",
                    version.key_id
                ),
            )
        })
    }

    async fn audited<T, F>(
        &self,
        op: Operation,
        provider: &dyn Provider,
        key_id: &str,
        context: Option<&EncryptionContext>,
        call: F,
    ) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        if let Some(limiter) = &self.limiter {
            limiter.acquire().await;
        }
        let kind = provider.kind();
        self.inner.stats.record(kind, op);
        let started = Instant::now();
        let result = call.await;
        let elapsed_us = started.elapsed().as_micros() as u64;
        let context = context.map(|c| c.canonical_json());
        let context = context.as_deref().unwrap_or("none");
        match &result {
            Ok(_) => tracing::info!(
                target: "kms_fields::audit",
                operation = op.as_str(),
                provider = kind.as_str(),
                key_id,
                context,
                elapsed_us,
                outcome = "ok"
            ),
            Err(e) => tracing::warn!(
                target: "kms_fields::audit",
                operation = op.as_str(),
                provider = kind.as_str(),
                key_id,
                context,
                elapsed_us,
                outcome = ?e.kind(),
                error = %e
            ),
        }
        result
    }

    /// Wrap `plaintext` with a resolved key version (one audited `Encrypt`).
    pub async fn wrap_with(
        &self,
        version: &KeyVersion,
        plaintext: &[u8],
        context: Option<&EncryptionContext>,
    ) -> Result<Vec<u8>> {
        let provider = self.provider_for(version)?;
        self.audited(
            Operation::Encrypt,
            provider.as_ref(),
            &version.key_id,
            context,
            provider.wrap(&version.key_id, plaintext, context),
        )
        .await
    }

    /// Unwrap a provider ciphertext with a resolved key version (one audited `Decrypt`).
    pub async fn unwrap_with(
        &self,
        version: &KeyVersion,
        ciphertext: &[u8],
        context: Option<&EncryptionContext>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let provider = self.provider_for(version)?;
        self.audited(
            Operation::Decrypt,
            provider.as_ref(),
            &version.key_id,
            context,
            provider.unwrap(&version.key_id, ciphertext, context),
        )
        .await
    }

    /// Encrypt `plaintext` with the spec's current version: returns the stored `vN:…` text.
    pub async fn encrypt(
        &self,
        spec: &KeySpec,
        per_record_key_id: Option<&str>,
        plaintext: &[u8],
        context: &ContextFn<'_>,
    ) -> Result<String> {
        let version = spec.current_version();
        let key = spec.resolve(version, per_record_key_id)?;
        let ctx = context(version)?;
        let ciphertext = self.wrap_with(&key, plaintext, ctx.as_ref()).await?;
        Ok(StoredKey::new(version, ciphertext).encode())
    }

    /// Decrypt a stored `vN:…` (or legacy) value with the version it names.
    pub async fn decrypt(
        &self,
        spec: &KeySpec,
        per_record_key_id: Option<&str>,
        stored: &str,
        context: &ContextFn<'_>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let parsed = StoredKey::parse(stored)?;
        let (key, ctx) = self.read_side(spec, per_record_key_id, &parsed, context)?;
        self.unwrap_with(&key, &parsed.ciphertext, ctx.as_ref())
            .await
    }

    /// The key version and context used to read `parsed` (kms_encrypted's Database#decrypt):
    /// the version's key id (a legacy Google value names its own, which must be one of the
    /// spec's keys, else `AccessDenied`), and the context of that
    /// version (legacy JSON for legacy values, `{}` under `upgrade_context`).
    pub fn read_side(
        &self,
        spec: &KeySpec,
        per_record_key_id: Option<&str>,
        parsed: &StoredKey,
        context: &ContextFn<'_>,
    ) -> Result<(KeyVersion, Option<EncryptionContext>)> {
        let ctx = match (&parsed.legacy, spec.upgrades_context()) {
            (Some(_), true) => Some(EncryptionContext::new().into_legacy()),
            (Some(_), false) => context(parsed.version)?.map(EncryptionContext::into_legacy),
            (None, _) => context(parsed.version)?,
        };
        let per_record = if parsed.version == spec.current_version() {
            per_record_key_id
        } else {
            None
        };
        let key = match &parsed.legacy {
            Some(Legacy::Google { key_id }) => allowed_google_key(spec, per_record_key_id, key_id)?,
            _ => spec.resolve(parsed.version, per_record)?,
        };
        Ok((key, ctx))
    }

    /// Re-wrap a stored value under the spec's current version and context, keeping the same
    /// plaintext: one native call when both sides are the same provider and it has one (AWS
    /// `ReEncrypt`, Vault `rewrap`), else unwrap + wrap. Returns the new stored text.
    pub async fn rewrap(
        &self,
        spec: &KeySpec,
        per_record_key_id: Option<&str>,
        stored: &str,
        context: &ContextFn<'_>,
    ) -> Result<String> {
        let parsed = StoredKey::parse(stored)?;
        let (from_key, from_ctx) = self.read_side(spec, per_record_key_id, &parsed, context)?;
        let version = spec.current_version();
        let to_key = spec.resolve(version, per_record_key_id)?;
        let to_ctx = context(version)?;
        let from_p = self.provider_for(&from_key)?;
        let to_p = self.provider_for(&to_key)?;
        let from = KeyRef {
            key_id: &from_key.key_id,
            context: from_ctx.as_ref(),
        };
        let to = KeyRef {
            key_id: &to_key.key_id,
            context: to_ctx.as_ref(),
        };
        let ciphertext = if Arc::ptr_eq(&from_p, &to_p) && from_p.native_rewrap(from, to) {
            self.audited(
                Operation::ReEncrypt,
                from_p.as_ref(),
                &to_key.key_id,
                to_ctx.as_ref(),
                from_p.rewrap(&parsed.ciphertext, from, to),
            )
            .await?
        } else {
            let plaintext = self
                .unwrap_with(&from_key, &parsed.ciphertext, from_ctx.as_ref())
                .await?;
            self.wrap_with(&to_key, &plaintext, to_ctx.as_ref()).await?
        };
        Ok(StoredKey::new(version, ciphertext).encode())
    }

    /// Wrap a data key: the stored key column value.
    pub async fn wrap_data_key(
        &self,
        spec: &KeySpec,
        per_record_key_id: Option<&str>,
        key: &DataKey,
        context: &ContextFn<'_>,
    ) -> Result<String> {
        self.encrypt(spec, per_record_key_id, key.expose_secret(), context)
            .await
    }

    /// Unwrap a key column value into the data key (through the decrypt cache when one is
    /// configured).
    pub async fn unwrap_data_key(
        &self,
        spec: &KeySpec,
        per_record_key_id: Option<&str>,
        stored: &str,
        context: &ContextFn<'_>,
    ) -> Result<DataKey> {
        let parsed = StoredKey::parse(stored)?;
        let (key, ctx) = self.read_side(spec, per_record_key_id, &parsed, context)?;
        let fetch = async {
            let plaintext = self
                .unwrap_with(&key, &parsed.ciphertext, ctx.as_ref())
                .await?;
            DataKey::from_slice(&plaintext).map_err(|_| {
                Error::new(
                    ErrorKind::BadFormat,
                    "the KMS returned a data key that is not 32 bytes",
                )
            })
        };
        #[cfg(feature = "cache")]
        if let Some(cache) = &self.inner.cache {
            let provider = self.provider_for(&key)?;
            let cache_key = crate::cache::CacheKey::new(
                &provider,
                key.key_id.clone(),
                parsed.ciphertext.clone(),
                ctx.as_ref()
                    .map(|c| String::from_utf8_lossy(&c.json_bytes()).into_owned()),
            );
            return cache
                .get_or_fetch(cache_key, provider, fetch)
                .await
                .map(|k| (*k).clone());
        }
        fetch.await
    }

    /// The decrypt cache, if configured (feature `cache`).
    #[cfg(feature = "cache")]
    pub fn decrypt_cache(&self) -> Option<&crate::cache::DecryptCache> {
        self.inner.cache.as_ref()
    }
}

/// The key a legacy `$gc$…` value names, if the spec names it too (its current version's key
/// id, or a previous version's; `cryptoKeyVersions/N` suffixes ignored), with that version's
/// provider. Anything else is `AccessDenied` before any KMS call: a database writer must not
/// choose the key that opens a record (a key of their own, to which they granted the
/// application's service account access).
fn allowed_google_key(
    spec: &KeySpec,
    per_record_key_id: Option<&str>,
    stored_key: &str,
) -> Result<KeyVersion> {
    let crypto_key = |k: &str| {
        k.split("/cryptoKeyVersions/")
            .next()
            .unwrap_or(k)
            .to_owned()
    };
    let current = spec.resolve(spec.current_version(), per_record_key_id).ok();
    let previous = spec
        .previous_versions()
        .keys()
        .filter_map(|&v| spec.resolve(v, None).ok());
    current
        .into_iter()
        .chain(previous)
        .find(|v| crypto_key(&v.key_id) == stored_key)
        .map(|v| KeyVersion {
            key_id: stored_key.to_owned(),
            provider: v.provider,
        })
        .ok_or_else(|| {
            Error::new(
                ErrorKind::AccessDenied,
                format!(
                    "the legacy Google value names the key {stored_key}, which is not among this key spec's key ids (current and previous versions): refused (a forged key column?)"
                ),
            )
        })
}

impl fmt::Debug for Kms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Kms")
            .field("test", &i.test)
            .field("local", &i.local)
            .field("aws", &i.aws)
            .field("vault", &i.vault)
            .field("gcp", &i.gcp)
            .field("stats", &i.stats)
            .field(
                "blind_index_keys",
                &i.blind_index_keys.keys().collect::<Vec<_>>(),
            )
            .field(
                "rate_per_second",
                &self.limiter.as_ref().map(|l| l.per_second()),
            )
            .finish()
    }
}

/// One unwrap of [`Kms::unwrap_many`]: the key version, the provider ciphertext, the context.
pub type UnwrapItem = (KeyVersion, Vec<u8>, Option<EncryptionContext>);

/// One wrap of [`Kms::wrap_many`]: the key version, the data key, the context, the version
/// number written in front of the stored value.
pub type WrapItem = (KeyVersion, DataKey, Option<EncryptionContext>, u32);

impl Kms {
    /// Unwrap many data keys, at most `concurrency` KMS calls in flight. Items of one key on a
    /// provider with a batch API (Vault `batch_input`) go in batches of its size; others one
    /// call each. With a decrypt cache, each item goes through it. Results in input order.
    pub async fn unwrap_many(
        &self,
        items: Vec<UnwrapItem>,
        concurrency: usize,
    ) -> Vec<Result<DataKey>> {
        use futures::StreamExt;
        let to_key = |pt: Zeroizing<Vec<u8>>| {
            DataKey::from_slice(&pt).map_err(|_| {
                Error::new(
                    ErrorKind::BadFormat,
                    "the KMS returned a data key that is not 32 bytes",
                )
            })
        };
        #[cfg(feature = "cache")]
        if self.inner.cache.is_some() {
            return futures::stream::iter(items)
                .map(|(key, ct, ctx)| async move {
                    let stored = StoredKey::new(1, ct).encode();
                    let spec = KeySpec::new().key_id(&key.key_id);
                    let spec = match key.provider.clone() {
                        Some(p) => spec.provider(p),
                        None => spec,
                    };
                    self.unwrap_data_key(&spec, None, &stored, &move |_| Ok(ctx.clone()))
                        .await
                })
                .buffered(concurrency.max(1))
                .collect()
                .await;
        }
        let groups = self.batch_groups(items.iter().map(|(k, _, _)| k));
        let jobs: Vec<Vec<usize>> = groups;
        let items = &items;
        let mut results: Vec<Option<Result<DataKey>>> = (0..items.len()).map(|_| None).collect();
        let mut done = futures::stream::iter(jobs)
            .map(|job| async move {
                let (key, _, _) = &items[job[0]];
                let provider = match self.provider_for(key) {
                    Ok(p) => p,
                    Err(e) => {
                        return job
                            .into_iter()
                            .map(|i| (i, Err(clone_error(&e))))
                            .collect::<Vec<_>>();
                    }
                };
                if job.len() == 1 {
                    let (key, ct, ctx) = &items[job[0]];
                    return vec![(
                        job[0],
                        self.unwrap_with(key, ct, ctx.as_ref())
                            .await
                            .and_then(to_key),
                    )];
                }
                let batch: Vec<(&[u8], Option<&EncryptionContext>)> = job
                    .iter()
                    .map(|&i| (items[i].1.as_slice(), items[i].2.as_ref()))
                    .collect();
                for _ in 1..job.len() {
                    self.inner.stats.record(provider.kind(), Operation::Decrypt);
                }
                let out = self
                    .audited(
                        Operation::Decrypt,
                        provider.as_ref(),
                        &key.key_id,
                        None,
                        provider.unwrap_batch(&key.key_id, &batch),
                    )
                    .await;
                match out {
                    Ok(rs) if rs.len() == job.len() => job
                        .into_iter()
                        .zip(rs)
                        .map(|(i, r)| (i, r.and_then(to_key)))
                        .collect(),
                    Ok(_) => job
                        .into_iter()
                        .map(|i| {
                            (
                                i,
                                Err(Error::new(
                                    ErrorKind::Provider,
                                    "batch returned a wrong number of results",
                                )),
                            )
                        })
                        .collect(),
                    Err(e) => job.into_iter().map(|i| (i, Err(clone_error(&e)))).collect(),
                }
            })
            .buffer_unordered(concurrency.max(1));
        while let Some(part) = done.next().await {
            for (i, r) in part {
                results[i] = Some(r);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::new(ErrorKind::Provider, "missing result"))))
            .collect()
    }

    /// Wrap many data keys (see [`unwrap_many`](Self::unwrap_many)); returns stored `vN:` values.
    pub async fn wrap_many(&self, items: Vec<WrapItem>, concurrency: usize) -> Vec<Result<String>> {
        use futures::StreamExt;
        let groups = self.batch_groups(items.iter().map(|(k, _, _, _)| k));
        let items = &items;
        let mut results: Vec<Option<Result<String>>> = (0..items.len()).map(|_| None).collect();
        let mut done = futures::stream::iter(groups)
            .map(|job| async move {
                let (key, _, _, _) = &items[job[0]];
                let provider = match self.provider_for(key) {
                    Ok(p) => p,
                    Err(e) => {
                        return job
                            .into_iter()
                            .map(|i| (i, Err(clone_error(&e))))
                            .collect::<Vec<_>>();
                    }
                };
                if job.len() == 1 {
                    let (key, dk, ctx, v) = &items[job[0]];
                    let r = self
                        .wrap_with(key, dk.expose_secret(), ctx.as_ref())
                        .await
                        .map(|ct| StoredKey::new(*v, ct).encode());
                    return vec![(job[0], r)];
                }
                let batch: Vec<(&[u8], Option<&EncryptionContext>)> = job
                    .iter()
                    .map(|&i| (&items[i].1.expose_secret()[..], items[i].2.as_ref()))
                    .collect();
                for _ in 1..job.len() {
                    self.inner.stats.record(provider.kind(), Operation::Encrypt);
                }
                let out = self
                    .audited(
                        Operation::Encrypt,
                        provider.as_ref(),
                        &key.key_id,
                        None,
                        provider.wrap_batch(&key.key_id, &batch),
                    )
                    .await;
                match out {
                    Ok(rs) if rs.len() == job.len() => job
                        .into_iter()
                        .zip(rs)
                        .map(|(i, r)| (i, r.map(|ct| StoredKey::new(items[i].3, ct).encode())))
                        .collect(),
                    Ok(_) => job
                        .into_iter()
                        .map(|i| {
                            (
                                i,
                                Err(Error::new(
                                    ErrorKind::Provider,
                                    "batch returned a wrong number of results",
                                )),
                            )
                        })
                        .collect(),
                    Err(e) => job.into_iter().map(|i| (i, Err(clone_error(&e)))).collect(),
                }
            })
            .buffer_unordered(concurrency.max(1));
        while let Some(part) = done.next().await {
            for (i, r) in part {
                results[i] = Some(r);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::new(ErrorKind::Provider, "missing result"))))
            .collect()
    }

    /// Indices grouped into jobs: batches per (provider, key id) for batch-capable providers,
    /// single items otherwise.
    fn batch_groups<'a>(&self, keys: impl Iterator<Item = &'a KeyVersion>) -> Vec<Vec<usize>> {
        let mut jobs: Vec<Vec<usize>> = Vec::new();
        let mut open: Vec<(usize, String, usize)> = Vec::new(); // (provider addr, key id, job index)
        for (i, key) in keys.enumerate() {
            let batchable = self.provider_for(key).ok().filter(|p| p.max_batch() > 1);
            let Some(p) = batchable else {
                jobs.push(vec![i]);
                continue;
            };
            let addr = Arc::as_ptr(&p) as *const () as usize;
            let max = p.max_batch();
            match open
                .iter_mut()
                .find(|(a, k, _)| *a == addr && *k == key.key_id)
            {
                Some((_, _, j)) if jobs[*j].len() < max => jobs[*j].push(i),
                Some(slot) => {
                    jobs.push(vec![i]);
                    slot.2 = jobs.len() - 1;
                }
                None => {
                    jobs.push(vec![i]);
                    open.push((addr, key.key_id.clone(), jobs.len() - 1));
                }
            }
        }
        jobs
    }
}

fn clone_error(e: &Error) -> Error {
    let mut out = Error::new(e.kind(), e.message().to_owned()).retryable(e.is_retryable());
    if let Some(at) = e.location() {
        out = out.context(at);
    }
    out
}
