//! Choosing a store per record or per call (per-tenant switching) without global state.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

use super::store::AttachmentStore;
use crate::error::{Error, Result};

/// Picks the [`AttachmentStore`] for a record (or a tenant, or a call).
///
/// Implemented by closures `Fn(&R) -> Result<AttachmentStore>`, by [`AttachmentStore`] itself
/// (always the same store) and by [`TenantStores`] (a map). Stores are cheap to clone, so a
/// selector returns one by value.
pub trait StoreSelector<R: ?Sized>: Send + Sync {
    /// The store for `record`.
    fn select(&self, record: &R) -> Result<AttachmentStore>;
}

impl<R: ?Sized, F> StoreSelector<R> for F
where
    F: Fn(&R) -> Result<AttachmentStore> + Send + Sync,
{
    fn select(&self, record: &R) -> Result<AttachmentStore> {
        self(record)
    }
}

impl<R: ?Sized> StoreSelector<R> for AttachmentStore {
    fn select(&self, _: &R) -> Result<AttachmentStore> {
        Ok(self.clone())
    }
}

/// A fixed map from tenant ids to stores, with an optional default.
///
/// ```
/// # use std::sync::Arc;
/// # use kms_fields::attachments::{AttachmentStore, StoreSelector, TenantStores, Mode};
/// # use object_store::memory::InMemory;
/// let bucket = Arc::new(InMemory::new());
/// let stores = TenantStores::<String>::new()
///     .with_default(AttachmentStore::plain(bucket.clone()))
///     .with("acme", AttachmentStore::new(bucket)); // acme requires encryption
/// assert_eq!(stores.select("acme")?.mode(), Mode::Encrypted);
/// assert_eq!(stores.select("other")?.mode(), Mode::Plain);
/// # Ok::<(), kms_fields::Error>(())
/// ```
pub struct TenantStores<K> {
    stores: HashMap<K, AttachmentStore>,
    default: Option<AttachmentStore>,
}

impl<K: Eq + Hash> TenantStores<K> {
    /// No tenants, no default.
    pub fn new() -> Self {
        Self {
            stores: HashMap::new(),
            default: None,
        }
    }

    /// The store of tenants not listed.
    pub fn with_default(mut self, store: AttachmentStore) -> Self {
        self.default = Some(store);
        self
    }

    /// The store of `tenant`.
    pub fn with(mut self, tenant: impl Into<K>, store: AttachmentStore) -> Self {
        self.stores.insert(tenant.into(), store);
        self
    }

    /// The store of `tenant` (or the default); `Config` error if there is none.
    pub fn get<Q>(&self, tenant: &Q) -> Result<&AttachmentStore>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.stores
            .get(tenant)
            .or(self.default.as_ref())
            .ok_or_else(|| Error::config("no attachment store is configured for this tenant"))
    }
}

impl<K: Eq + Hash> Default for TenantStores<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, Q> StoreSelector<Q> for TenantStores<K>
where
    K: Eq + Hash + std::borrow::Borrow<Q> + Send + Sync,
    Q: Hash + Eq + ?Sized,
{
    fn select(&self, tenant: &Q) -> Result<AttachmentStore> {
        self.get(tenant).cloned()
    }
}

impl<K: fmt::Debug> fmt::Debug for TenantStores<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantStores")
            .field("stores", &self.stores)
            .field("default", &self.default)
            .finish()
    }
}
