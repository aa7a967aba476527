//! Key specs: which master key wraps a record's data key, in which version.
//!
//! A [`KeySpec`] describes one key of a model (`kms_key`, or `kms_key_<name>` stored in
//! `encrypted_kms_key_<name>`): the key id of the current version, the current version number,
//! and the `previous_versions` still accepted for reading. A stored value of any other version
//! fails with exactly `Version not active: N`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::provider::Provider;

/// Environment variable holding the default key id (as kms_encrypted).
pub const DEFAULT_KEY_ID_ENV: &str = "KMS_KEY_ID";

/// Where the current version's key id comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyIdSource {
    /// A fixed key id.
    Static(String),
    /// Read from an environment variable when used (default `KMS_KEY_ID`).
    Env(String),
    /// Computed per record (multi-tenant); the record supplies it at each call.
    PerRecord,
}

/// One accepted key version.
#[derive(Clone)]
pub struct KeyVersion {
    /// The key id of this version.
    pub key_id: String,
    /// A provider for this version only (another account, another Vault); `None`: the
    /// [`Kms`](crate::Kms) default for the key id's form.
    pub provider: Option<Arc<dyn Provider>>,
}

impl fmt::Debug for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVersion")
            .field("key_id", &self.key_id)
            .field("provider", &self.provider.as_ref().map(|p| p.kind()))
            .finish()
    }
}

/// Key id rewriting as kms_rails did: a bare name becomes an alias with an optional prefix,
/// optionally turned into an ARN. UUIDs, `alias/…`, ARNs and the other providers' key ids are
/// left alone.
///
/// ```
/// use kms_fields::KeyIdResolver;
/// let r = KeyIdResolver::new().alias_prefix("prod-");
/// assert_eq!(r.resolve("users"), "alias/prod-users");
/// assert_eq!(r.resolve("alias/users"), "alias/users");
/// assert_eq!(r.resolve("1234abcd-12ab-34cd-56ef-1234567890ab"), "1234abcd-12ab-34cd-56ef-1234567890ab");
/// let arn = r.arn_prefix("arn:aws:kms:us-east-1:111122223333:");
/// assert_eq!(arn.resolve("users"), "arn:aws:kms:us-east-1:111122223333:alias/prod-users");
/// assert_eq!(arn.resolve("vault/users"), "vault/users");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyIdResolver {
    alias_prefix: Option<String>,
    arn_prefix: Option<String>,
}

impl KeyIdResolver {
    /// No rewriting.
    pub fn new() -> Self {
        Self::default()
    }

    /// `name` → `alias/<prefix>name`.
    pub fn alias_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.alias_prefix = Some(prefix.into());
        self
    }

    /// `alias/x` or a UUID → `<arn prefix>alias/x` / `<arn prefix>key/<uuid>`
    /// (e.g. `arn:aws:kms:us-east-1:111122223333:`), for keys in another account.
    pub fn arn_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.arn_prefix = Some(prefix.into());
        self
    }

    /// Whether this resolver changes anything.
    pub fn is_identity(&self) -> bool {
        self.alias_prefix.is_none() && self.arn_prefix.is_none()
    }

    /// Rewrite `key_id`.
    pub fn resolve(&self, key_id: &str) -> String {
        use crate::provider::ProviderKind;
        if ProviderKind::for_key_id(key_id) != ProviderKind::Aws || key_id.starts_with("arn:") {
            return key_id.to_owned();
        }
        let uuid = is_uuid(key_id);
        let short = if uuid || key_id.starts_with("alias/") || self.alias_prefix.is_none() {
            key_id.to_owned()
        } else {
            format!(
                "alias/{}{key_id}",
                self.alias_prefix.as_deref().unwrap_or_default()
            )
        };
        match &self.arn_prefix {
            Some(arn) if uuid => format!("{arn}key/{short}"),
            Some(arn) if short.starts_with("alias/") => format!("{arn}{short}"),
            _ => short,
        }
    }
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

/// The configuration of one key of a model.
///
/// ```
/// use kms_fields::KeySpec;
/// let spec = KeySpec::named("phone")
///     .key_id("insecure-test-key")
///     .version(2)
///     .previous_version(1, "insecure-test-key");
/// assert_eq!(spec.column(), "encrypted_kms_key_phone");
/// assert_eq!(spec.method(), "kms_key_phone");
/// assert_eq!(spec.resolve(1, None)?.key_id, "insecure-test-key");
/// assert_eq!(spec.resolve(3, None).unwrap_err().to_string(), "Version not active: 3");
/// # Ok::<(), kms_fields::Error>(())
/// ```
#[derive(Clone)]
pub struct KeySpec {
    name: Option<String>,
    source: KeyIdSource,
    version: u32,
    provider: Option<Arc<dyn Provider>>,
    previous: BTreeMap<u32, KeyVersion>,
    resolver: KeyIdResolver,
    upgrade_context: bool,
}

impl Default for KeySpec {
    fn default() -> Self {
        Self::new()
    }
}

impl KeySpec {
    /// The default key (`kms_key`, column `encrypted_kms_key`), key id from `KMS_KEY_ID`,
    /// version 1.
    pub fn new() -> Self {
        Self {
            name: None,
            source: KeyIdSource::Env(DEFAULT_KEY_ID_ENV.to_owned()),
            version: 1,
            provider: None,
            previous: BTreeMap::new(),
            resolver: KeyIdResolver::default(),
            upgrade_context: false,
        }
    }

    /// An extra key `kms_key_<name>` stored in `encrypted_kms_key_<name>`.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::new()
        }
    }

    /// A fixed key id for the current version.
    pub fn key_id(mut self, key_id: impl Into<String>) -> Self {
        self.source = KeyIdSource::Static(key_id.into());
        self
    }

    /// Read the current key id from this environment variable when used.
    pub fn key_id_from_env(mut self, var: impl Into<String>) -> Self {
        self.source = KeyIdSource::Env(var.into());
        self
    }

    /// The key id is computed per record (multi-tenant); the record passes it to each call.
    pub fn key_id_per_record(mut self) -> Self {
        self.source = KeyIdSource::PerRecord;
        self
    }

    /// The current version (default 1).
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// A provider for the current version (e.g. an AWS client of another account).
    pub fn provider(mut self, provider: Arc<dyn Provider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Accept `version` for reading, wrapped by `key_id`.
    pub fn previous_version(mut self, version: u32, key_id: impl Into<String>) -> Self {
        self.previous.insert(
            version,
            KeyVersion {
                key_id: key_id.into(),
                provider: None,
            },
        );
        self
    }

    /// Accept `version` for reading, through its own provider.
    pub fn previous_version_with_provider(
        mut self,
        version: u32,
        key_id: impl Into<String>,
        provider: Arc<dyn Provider>,
    ) -> Self {
        self.previous.insert(
            version,
            KeyVersion {
                key_id: key_id.into(),
                provider: Some(provider),
            },
        );
        self
    }

    /// Rewrite key ids (alias / ARN prefixes, as kms_rails).
    pub fn resolver(mut self, resolver: KeyIdResolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// Unwrap legacy (unprefixed) key columns with an empty context, as kms_encrypted's
    /// `upgrade_context: true`.
    pub fn upgrade_context(mut self, yes: bool) -> Self {
        self.upgrade_context = yes;
        self
    }

    /// The key's name (`None` for the default key).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// `kms_key` or `kms_key_<name>`.
    pub fn method(&self) -> String {
        match &self.name {
            Some(n) => format!("kms_key_{n}"),
            None => "kms_key".to_owned(),
        }
    }

    /// `encrypted_kms_key` or `encrypted_kms_key_<name>`.
    pub fn column(&self) -> String {
        format!("encrypted_{}", self.method())
    }

    /// The current version.
    pub fn current_version(&self) -> u32 {
        self.version
    }

    /// Where the current key id comes from.
    pub fn key_id_source(&self) -> &KeyIdSource {
        &self.source
    }

    /// The accepted previous versions.
    pub fn previous_versions(&self) -> &BTreeMap<u32, KeyVersion> {
        &self.previous
    }

    /// Whether legacy values are read with an empty context.
    pub fn upgrades_context(&self) -> bool {
        self.upgrade_context
    }

    /// The key id and provider override for `version`, as kms_encrypted's `version_key_id`:
    /// a previous version's entry wins, then the current version; anything else is
    /// `Version not active: N`. `per_record` is the record's computed key id, used for the
    /// current version when the source is [`KeyIdSource::PerRecord`] (and preferred over the
    /// static one when given).
    pub fn resolve(&self, version: u32, per_record: Option<&str>) -> Result<KeyVersion> {
        let version_entry = if let Some(prev) = self.previous.get(&version) {
            prev.clone()
        } else if version == self.version {
            let key_id = match (per_record, &self.source) {
                (Some(id), _) => id.to_owned(),
                (None, KeyIdSource::Static(id)) => id.clone(),
                (None, KeyIdSource::Env(var)) => std::env::var(var).map_err(|_| {
                    Error::new(
                        ErrorKind::MissingKeyId,
                        format!("Missing key id: set {var} or configure a key id"),
                    )
                })?,
                (None, KeyIdSource::PerRecord) => {
                    return Err(Error::new(
                        ErrorKind::MissingKeyId,
                        "Missing key id: this key's id is computed per record and none was given",
                    ));
                }
            };
            KeyVersion {
                key_id,
                provider: self.provider.clone(),
            }
        } else {
            return Err(Error::version_not_active(version));
        };
        if version_entry.key_id.is_empty() {
            return Err(Error::new(ErrorKind::MissingKeyId, "Missing key id"));
        }
        Ok(KeyVersion {
            key_id: self.resolver.resolve(&version_entry.key_id),
            provider: version_entry.provider,
        })
    }
}

impl fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySpec")
            .field("name", &self.method())
            .field("key_id", &self.source)
            .field("version", &self.version)
            .field("previous_versions", &self.previous)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_version_wins_and_unknown_fails() {
        let spec = KeySpec::new()
            .key_id("alias/new")
            .version(2)
            .previous_version(1, "alias/old");
        assert_eq!(spec.resolve(2, None).unwrap().key_id, "alias/new");
        assert_eq!(spec.resolve(1, None).unwrap().key_id, "alias/old");
        assert_eq!(
            spec.resolve(3, None).unwrap_err().kind(),
            ErrorKind::VersionNotActive(3)
        );
        assert_eq!(
            spec.resolve(0, None).unwrap_err().to_string(),
            "Version not active: 0"
        );
    }

    #[test]
    fn env_and_per_record_sources() {
        let spec = KeySpec::new().key_id_from_env("KMS_FIELDS_TEST_SURELY_UNSET_VAR");
        assert_eq!(
            spec.resolve(1, None).unwrap_err().kind(),
            ErrorKind::MissingKeyId
        );
        let tenant = KeySpec::new().key_id_per_record();
        assert_eq!(
            tenant.resolve(1, None).unwrap_err().kind(),
            ErrorKind::MissingKeyId
        );
        assert_eq!(
            tenant.resolve(1, Some("alias/tenant-9")).unwrap().key_id,
            "alias/tenant-9"
        );
    }

    #[test]
    fn resolver_applies_to_aws_only() {
        let spec = KeySpec::new()
            .key_id("users")
            .resolver(KeyIdResolver::new().alias_prefix("app-"));
        assert_eq!(spec.resolve(1, None).unwrap().key_id, "alias/app-users");
        assert_eq!(
            KeyIdResolver::new()
                .alias_prefix("x")
                .resolve("insecure-test-key"),
            "insecure-test-key"
        );
        assert_eq!(KeyIdResolver::new().resolve("users"), "users");
    }
}
