//! The optional decrypt cache (feature `cache`, off unless configured on the [`Kms`](crate::Kms)).
//!
//! Bounded by entries, with an absolute time to live, keyed by provider *instance* (two AWS
//! clients of two accounts never share an entry, so each client's own permission check runs),
//! key id, wrapped key and context: the same stored key column read again within the TTL costs no KMS call, and
//! concurrent reads of one wrapped key share one call. Data keys are held as `Arc<DataKey>`,
//! zeroized when the last reference goes (eviction, expiry, or the reader dropping its copy).
//!
//! Trade-off: a cached data key outlives a revocation at the KMS (disabled key, removed grant)
//! for up to the TTL, and each Decrypt the cache saves is one audit-log entry fewer. Keep the
//! TTL short (seconds to minutes) and use it for hot read paths only. Encryption is never
//! cached: every record gets its own data key.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::data_key::DataKey;
use crate::error::Error;
use crate::provider::Provider;

#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    /// The address of the provider instance that unwrapped the key. The entry holds that
    /// instance (see [`Cached`]), so no other provider can be allocated at the same address
    /// while the entry lives.
    pub(crate) provider: usize,
    pub(crate) key_id: String,
    pub(crate) wrapped: Vec<u8>,
    pub(crate) context: Option<String>,
}

/// Configuration of the decrypt cache.
///
/// ```
/// use std::time::Duration;
/// let kms = kms_fields::Kms::builder()
///     .decrypt_cache(kms_fields::DecryptCache::new(10_000, Duration::from_secs(60)))
///     .build();
/// # let _ = kms;
/// ```
#[derive(Clone)]
pub struct DecryptCache {
    pub(crate) inner: Cache<CacheKey, Cached>,
}

/// A cached data key and the provider instance its [`CacheKey`] names.
#[derive(Clone)]
pub(crate) struct Cached {
    key: Arc<DataKey>,
    _provider: Arc<dyn Provider>,
}

impl CacheKey {
    /// The key of an entry fetched through `provider`.
    pub(crate) fn new(
        provider: &Arc<dyn Provider>,
        key_id: String,
        wrapped: Vec<u8>,
        context: Option<String>,
    ) -> Self {
        Self {
            provider: Arc::as_ptr(provider).cast::<()>() as usize,
            key_id,
            wrapped,
            context,
        }
    }
}

impl DecryptCache {
    /// At most `max_entries` data keys, each kept at most `ttl` after it was fetched.
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        Self {
            inner: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// Cached entries (approximate).
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }

    /// Apply pending evictions and expirations now (moka does them lazily); afterwards
    /// [`entry_count`](Self::entry_count) is exact.
    pub async fn run_pending_tasks(&self) {
        self.inner.run_pending_tasks().await;
    }

    /// Drop every entry (their keys are zeroized once no reader holds them).
    pub fn clear(&self) {
        self.inner.invalidate_all();
    }

    pub(crate) async fn get_or_fetch<F>(
        &self,
        key: CacheKey,
        provider: Arc<dyn Provider>,
        fetch: F,
    ) -> crate::Result<Arc<DataKey>>
    where
        F: std::future::Future<Output = crate::Result<DataKey>>,
    {
        debug_assert_eq!(key.provider, Arc::as_ptr(&provider).cast::<()>() as usize);
        self.inner
            .try_get_with(key, async move {
                fetch.await.map(|k| Cached {
                    key: Arc::new(k),
                    _provider: provider,
                })
            })
            .await
            .map(|c| c.key)
            .map_err(|e: Arc<Error>| clone_error(&e))
    }
}

fn clone_error(e: &Error) -> Error {
    Error::new(e.kind(), e.message().to_owned())
        .retryable(e.is_retryable())
        .context(e.location().unwrap_or("decrypt cache"))
}

impl std::fmt::Debug for DecryptCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptCache")
            .field("entries", &self.inner.entry_count())
            .finish()
    }
}
