//! Vault / OpenBao transit (feature `vault`), through the `vaultrs` client.
//!
//! - Key id `vault/<key name>`, on a transit mount (default `transit`, configurable — kms_encrypted
//!   hard-codes it); keys created with `derived: true` so each record's context derives its own
//!   key.
//! - wrap = `POST <mount>/encrypt/<key>` with `plaintext` = base64 and `context` =
//!   base64(canonical context JSON); unwrap = `decrypt`; re-wrap = `rewrap` (no plaintext leaves
//!   Vault) when the key and context stay the same, else decrypt + encrypt.
//! - The stored provider ciphertext is Vault's ASCII `vault:vN:…`, so key columns start
//!   `v1:dmF1bHQ6` (docs/FORMATS.md §2 Key column).
//! - Many wraps or unwraps of one key go in one request with `batch_input` ([`BATCH_SIZE`] per
//!   request, [`VaultProvider::batch_size`] to change it). A request the server refuses as too
//!   complex (OpenBao's `max_request_json_strings`) is split in halves and sent again.
//! - Each key's configuration is read once (`GET <mount>/keys/<name>`) before its first use: a
//!   key without `derived=true` ignores the context, so it is refused with
//!   [`ErrorKind::KeyNotDerived`] (or only logged, [`NonDerivedKeys::Warn`]).
//! - [`VaultProvider::context_hash`] returns the audit-log hash of exactly the `context` string
//!   kms-fields sends (`sys/audit-hash/<path>`), so a record's Vault audit entries can be found.
//!   kms_encrypted hashes a differently serialised context there, which never matches.
//!
//! Errors: "message authentication failed" / "unable to decrypt" (wrong context, tampering) →
//! `DecryptionFailed`; a version under `min_decryption_version` → `KeyUnusable` naming it;
//! permission denied (an encrypt-only token asked to decrypt) → `AccessDenied`; missing key →
//! `KeyUnusable`; a key without `derived=true` → `KeyNotDerived`; 5xx (other than an
//! authentication failure), 429 and connection errors → retryable `Provider`.
//!
//! OpenBao serves the same API. Two drifts are handled: older Vault (1.5–1.6) answers a wrong
//! context with HTTP 500, which is why messages are checked before status codes; and
//! `sys/audit-hash` is documented (by Vault and OpenBao alike) as answering `{"hash": …}` at the
//! top level, while a server may send the generic envelope with `data.hash` (or both), so
//! [`VaultProvider::context_hash`] reads either.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OnceCell;
use vaultrs::api::transit::requests::{DecryptDataRequest, EncryptDataRequest, RewrapDataRequest};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use super::{KeyRef, Provider, ProviderKind};
use crate::context::EncryptionContext;
use crate::encoding;
use crate::error::{Error, ErrorKind, Result};

/// Items per `batch_input` request, by default.
///
/// OpenBao's listener refuses a JSON body with more than `max_request_json_strings` strings
/// (default 1000; keys and values both count): an item of a decrypt batch is four
/// (`"ciphertext"`, its value, `"context"`, its value), so 249 items is the most a default
/// server takes — measured on OpenBao 2.7.2, where 250 is refused with "refused JSON input due
/// to high complexity". 200 leaves room. A server with other limits: [`VaultProvider::batch_size`].
pub const BATCH_SIZE: usize = 200;

/// What the provider does with a transit key that is not `derived` (see
/// [`VaultProvider::non_derived_keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NonDerivedKeys {
    /// Refuse the key with [`ErrorKind::KeyNotDerived`] before any wrap or unwrap, and refuse a
    /// token that may not read the key's configuration with [`ErrorKind::AccessDenied`]. The
    /// default.
    #[default]
    Refuse,
    /// Use the key anyway, logging one `tracing` warning per key (for a migration off old,
    /// non-derived keys). A token that may not read the key's configuration is warned about
    /// too. The context then binds nothing: a copied key column opens under another record.
    Warn,
}

impl NonDerivedKeys {
    /// From `KMS_FIELDS_VAULT_NON_DERIVED` (`refuse`, the default, or `warn`).
    pub fn from_env() -> Result<Self> {
        Self::parse(
            std::env::var("KMS_FIELDS_VAULT_NON_DERIVED")
                .ok()
                .as_deref(),
        )
    }

    fn parse(value: Option<&str>) -> Result<Self> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("" | "refuse") => Ok(Self::Refuse),
            Some("warn") => Ok(Self::Warn),
            Some(other) => Err(Error::config(format!(
                "KMS_FIELDS_VAULT_NON_DERIVED must be refuse or warn, got {other:?}"
            ))),
        }
    }
}

/// The results of one `batch_input` request (boxed: a refused request recurses in halves).
type BatchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Result<serde_json::Value>>>> + Send + 'a>>;

/// The once-per-key configuration check, shared by clones of a provider.
type KeyChecks = Arc<Mutex<HashMap<String, Arc<OnceCell<()>>>>>;

/// The Vault / OpenBao transit provider.
#[derive(Clone)]
pub struct VaultProvider {
    client: Arc<VaultClient>,
    mount: String,
    batch_size: usize,
    non_derived: NonDerivedKeys,
    checked: KeyChecks,
}

impl VaultProvider {
    /// Use this client, with the `transit` mount.
    pub fn new(client: VaultClient) -> Self {
        Self {
            client: Arc::new(client),
            mount: "transit".into(),
            batch_size: BATCH_SIZE,
            non_derived: NonDerivedKeys::Refuse,
            checked: KeyChecks::default(),
        }
    }

    /// A client for `address` with `token` (and a namespace), 10 s timeout.
    pub fn connect(address: &str, token: &str, namespace: Option<&str>) -> Result<Self> {
        let valid = (address.starts_with("http://") || address.starts_with("https://"))
            && address
                .split("://")
                .nth(1)
                .is_some_and(|h| !h.is_empty() && !h.contains(' '));
        if !valid {
            return Err(Error::config(format!(
                "Vault address must be an http(s) URL, got {address:?}"
            )));
        }
        let mut settings = VaultClientSettingsBuilder::default();
        settings
            .address(address)
            .token(token)
            .timeout(Some(Duration::from_secs(10)));
        if let Some(ns) = namespace {
            settings.set_namespace(ns.to_owned());
        }
        let settings = settings
            .build()
            .map_err(|e| Error::config(format!("Vault client settings: {e}")))?;
        let client =
            VaultClient::new(settings).map_err(|e| Error::config(format!("Vault client: {e}")))?;
        Ok(Self::new(client))
    }

    /// From `VAULT_ADDR`, `VAULT_TOKEN` and `VAULT_NAMESPACE` (optional), and
    /// `KMS_FIELDS_VAULT_NON_DERIVED` ([`NonDerivedKeys::from_env`]).
    pub fn from_env() -> Result<Self> {
        let addr =
            std::env::var("VAULT_ADDR").map_err(|_| Error::config("VAULT_ADDR is not set"))?;
        let token =
            std::env::var("VAULT_TOKEN").map_err(|_| Error::config("VAULT_TOKEN is not set"))?;
        let ns = std::env::var("VAULT_NAMESPACE")
            .ok()
            .filter(|s| !s.is_empty());
        Ok(Self::connect(&addr, &token, ns.as_deref())?
            .non_derived_keys(NonDerivedKeys::from_env()?))
    }

    /// Use another transit mount path than `transit`.
    pub fn mount(mut self, mount: impl Into<String>) -> Self {
        self.mount = mount.into().trim_matches('/').to_owned();
        self.checked = KeyChecks::default();
        self
    }

    /// Items per `batch_input` request (at least 1; default [`BATCH_SIZE`]). A batch the
    /// server refuses as too complex is split and sent again, so a too large value costs a
    /// refused request per batch, not a failure.
    pub fn batch_size(mut self, items: usize) -> Self {
        self.batch_size = items.max(1);
        self
    }

    /// What to do with keys that are not `derived` (default [`NonDerivedKeys::Refuse`]).
    pub fn non_derived_keys(mut self, policy: NonDerivedKeys) -> Self {
        self.non_derived = policy;
        self.checked = KeyChecks::default();
        self
    }

    /// The underlying `vaultrs` client (key management, tests).
    pub fn client(&self) -> &VaultClient {
        &self.client
    }

    fn key_name(key_id: &str) -> Result<&str> {
        key_id
            .strip_prefix("vault/")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                Error::config(format!(
                    "not a Vault key id: {key_id} (expected vault/<key name>)"
                ))
            })
    }

    /// The audit-log hash of the `context` kms-fields sends for `context`:
    /// `sys/audit-hash/<audit_path>` over exactly `base64(canonical context)`. Search the audit
    /// log for it to find every KMS call about one record.
    pub async fn context_hash(
        &self,
        context: &EncryptionContext,
        audit_path: &str,
    ) -> Result<String> {
        let body = serde_json::json!({ "input": context.vault_context() });
        let (status, v) = self
            .post(
                &format!("sys/audit-hash/{}", audit_path.trim_matches('/')),
                &body,
            )
            .await?;
        if status >= 300 {
            return Err(map_status("audit-hash", audit_path, status, messages(&v)));
        }
        v.get("hash")
            .or_else(|| v.get("data").and_then(|d| d.get("hash")))
            .and_then(|h| h.as_str())
            .map(str::to_owned)
            .ok_or_else(|| Error::new(ErrorKind::Provider, "Vault audit-hash returned no hash"))
    }

    /// A raw JSON POST through the client's HTTP client (for what vaultrs has no endpoint for:
    /// `batch_input`, `sys/audit-hash`). Returns the status and the JSON body.
    async fn post(&self, path: &str, body: &serde_json::Value) -> Result<(u16, serde_json::Value)> {
        self.call(path, Some(body)).await
    }

    /// A raw GET (`body` `None`) or JSON POST. Returns the status and the JSON body.
    async fn call(
        &self,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value)> {
        let http = &self.client.http;
        let url = format!("{}/v1/{path}", http.base.trim_end_matches('/'));
        let mut req = match body {
            Some(_) => http
                .http
                .post(url)
                .header("Content-Type", "application/json"),
            None => http.http.get(url),
        };
        let settings = &self.client.settings;
        if !settings.token.is_empty() {
            req = req.header("X-Vault-Token", settings.token.as_str());
        }
        if let Some(ns) = &settings.namespace {
            req = req.header("X-Vault-Namespace", ns.as_str());
        }
        if let Some(body) = body {
            let body = serde_json::to_vec(body)
                .map_err(|e| Error::new(ErrorKind::Provider, format!("JSON: {e}")))?;
            req = req.body(body);
        }
        let resp = req.send().await.map_err(|e| {
            Error::new(
                ErrorKind::Provider,
                format!("Vault request to {path} failed: {e}"),
            )
            .retryable(true)
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| {
            Error::new(ErrorKind::Provider, format!("Vault response: {e}")).retryable(true)
        })?;
        let v = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
        };
        Ok((status, v))
    }

    /// Check once per key (per provider and its clones) that `key_id` is a derived key: read
    /// its configuration, refuse or warn as configured. Only a passed check is remembered, so a
    /// refused key or a failed read is tried again on the next call.
    async fn ensure_derived(&self, key_id: &str) -> Result<()> {
        let name = Self::key_name(key_id)?;
        let cell = {
            let mut checked = self
                .checked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            checked.entry(name.to_owned()).or_default().clone()
        };
        cell.get_or_try_init(|| self.check_key(key_id, name))
            .await
            .map(|_| ())
    }

    async fn check_key(&self, key_id: &str, name: &str) -> Result<()> {
        let path = format!("{}/keys/{name}", self.mount);
        let (status, v) = self.call(&path, None).await?;
        let warn = self.non_derived == NonDerivedKeys::Warn;
        if status == 403 {
            let message = format!(
                "Vault key {key_id}: this token may not read {path}, so kms-fields cannot check that the key is derived (grant it `read` on that path)"
            );
            if warn {
                tracing::warn!(key_id, mount = %self.mount, "{message}");
                return Ok(());
            }
            return Err(Error::new(ErrorKind::AccessDenied, message));
        }
        if status >= 300 {
            return Err(map_status("key read", key_id, status, messages(&v)));
        }
        let derived = v
            .get("data")
            .and_then(|d| d.get("derived"))
            .and_then(serde_json::Value::as_bool);
        match derived {
            Some(true) => Ok(()),
            _ if warn => {
                tracing::warn!(
                    key_id,
                    mount = %self.mount,
                    "Vault key {key_id} is not derived: the encryption context is ignored, a key column copied to another record opens there"
                );
                Ok(())
            }
            _ => Err(Error::new(
                ErrorKind::KeyNotDerived,
                format!(
                    "Vault key {key_id} (mount {}) is not derived: transit ignores the encryption context on it; create the key with derived=true",
                    self.mount
                ),
            )),
        }
    }

    async fn batch(
        &self,
        op: &str,
        key_id: &str,
        mut items: Vec<serde_json::Value>,
    ) -> Result<Vec<Result<serde_json::Value>>> {
        let mut out = Vec::with_capacity(items.len());
        while !items.is_empty() {
            let rest = items.split_off(items.len().min(self.batch_size));
            out.extend(self.batch_request(op, key_id, items).await?);
            items = rest;
        }
        Ok(out)
    }

    /// One `batch_input` request; one the server refuses as too complex is split in halves.
    fn batch_request<'a>(
        &'a self,
        op: &'a str,
        key_id: &'a str,
        items: Vec<serde_json::Value>,
    ) -> BatchFuture<'a> {
        Box::pin(async move {
            let name = Self::key_name(key_id)?;
            let count = items.len();
            let body = serde_json::json!({ "batch_input": items });
            let (status, v) = self
                .post(&format!("{}/{op}/{name}", self.mount), &body)
                .await?;
            let results = v
                .get("data")
                .and_then(|d| d.get("batch_results"))
                .and_then(|r| r.as_array());
            let Some(results) = results else {
                let errors = messages(&v);
                if count > 1 && too_complex(status, &errors) {
                    let mut items = match body {
                        serde_json::Value::Object(mut o) => match o.remove("batch_input") {
                            Some(serde_json::Value::Array(a)) => a,
                            _ => Vec::new(),
                        },
                        _ => Vec::new(),
                    };
                    let second = items.split_off(count / 2);
                    let mut out = self.batch_request(op, key_id, items).await?;
                    out.extend(self.batch_request(op, key_id, second).await?);
                    return Ok(out);
                }
                return Err(map_status(op, key_id, status, errors));
            };
            if results.len() != count {
                return Err(Error::new(
                    ErrorKind::Provider,
                    format!(
                        "Vault {op} batch returned {} results for {count} items",
                        results.len(),
                    ),
                ));
            }
            Ok(results
                .iter()
                .map(|r| {
                    match r
                        .get("error")
                        .and_then(|e| e.as_str())
                        .filter(|e| !e.is_empty())
                    {
                        Some(e) => Err(map_status(op, key_id, 400, vec![e.to_owned()])),
                        None => Ok(r.clone()),
                    }
                })
                .collect())
        })
    }
}

/// Whether a refused request was refused for its size or complexity (OpenBao's
/// `max_request_json_strings` / `max_request_json_memory`, or `max_request_size`).
fn too_complex(status: u16, errors: &[String]) -> bool {
    status == 413
        || errors.iter().any(|e| {
            let e = e.to_lowercase();
            e.contains("high complexity") || e.contains("request body too large")
        })
}

fn messages(v: &serde_json::Value) -> Vec<String> {
    v.get("errors")
        .and_then(|e| e.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|m| m.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Map a Vault error response to a kms-fields error (message first: old Vault said 500 for a
/// wrong context).
fn map_status(op: &str, key_id: &str, status: u16, messages: Vec<String>) -> Error {
    let text = messages.join("; ");
    let lower = text.to_lowercase();
    let (kind, retryable, message) = if lower.contains("message authentication failed")
        || lower.contains("unable to decrypt")
    {
        (
            ErrorKind::DecryptionFailed,
            false,
            "Decryption failed".to_owned(),
        )
    } else if lower.contains("disallowed by policy (too old)") {
        (
            ErrorKind::KeyUnusable,
            false,
            format!(
                "Vault {op} with {key_id}: the ciphertext's key version is below the key's min_decryption_version (retired)"
            ),
        )
    } else if lower.contains("invalid ciphertext") {
        (
            ErrorKind::DecryptionFailed,
            false,
            format!("Vault {op} with {key_id}: {text}"),
        )
    } else if status == 403 || lower.contains("permission denied") {
        (
            ErrorKind::AccessDenied,
            false,
            format!("Vault {op} with {key_id}: permission denied"),
        )
    } else if status == 404 || lower.contains("key not found") || lower.contains("no existing key")
    {
        (
            ErrorKind::KeyUnusable,
            false,
            format!("Vault {op} with {key_id}: key not found"),
        )
    } else if status >= 500 || status == 429 {
        (
            ErrorKind::Provider,
            true,
            format!("Vault {op} with {key_id} failed (HTTP {status}): {text}"),
        )
    } else {
        (
            ErrorKind::Provider,
            false,
            format!("Vault {op} with {key_id} failed (HTTP {status}): {text}"),
        )
    };
    Error::new(kind, message).retryable(retryable)
}

fn map_client_error(op: &str, key_id: &str, e: ClientError) -> Error {
    match e {
        ClientError::APIError { code, errors } => map_status(op, key_id, code, errors),
        ClientError::RestClientError { source } => match source {
            rustify::errors::ClientError::ServerResponseError { code, content } => {
                let v: serde_json::Value = content
                    .as_deref()
                    .and_then(|c| serde_json::from_str(c).ok())
                    .unwrap_or_default();
                map_status(op, key_id, code, messages(&v))
            }
            rustify::errors::ClientError::RequestError { .. } => Error::new(
                ErrorKind::Provider,
                format!("Vault {op} with {key_id}: cannot reach Vault"),
            )
            .retryable(true),
            other => Error::new(
                ErrorKind::Provider,
                format!("Vault {op} with {key_id} failed: {other}"),
            ),
        },
        other => Error::new(
            ErrorKind::Provider,
            format!("Vault {op} with {key_id} failed: {other}"),
        ),
    }
}

fn context_b64(context: Option<&EncryptionContext>) -> Option<String> {
    context.map(EncryptionContext::vault_context)
}

fn decode_plaintext(b64: &str) -> Result<Zeroizing<Vec<u8>>> {
    encoding::lenient_decode(b64)
        .map(Zeroizing::new)
        .map_err(|_| Error::new(ErrorKind::Provider, "Vault returned invalid base64"))
}

/// The fuzz target's part (see `crate::fuzzing::providers`): an error body mapped for every
/// status, and a base64 plaintext.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_responses(body: &[u8]) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    for status in [200u16, 400, 403, 404, 429, 500, 503] {
        let e = map_status("decrypt", "vault/k", status, messages(&v));
        if e.is_retryable() {
            assert_eq!(e.kind(), ErrorKind::Provider);
        }
        if e.kind() == ErrorKind::DecryptionFailed
            && !e.to_string().to_lowercase().contains("invalid ciphertext")
        {
            assert!(e.to_string().starts_with("Decryption failed"), "{e}");
        }
    }
    if let Ok(text) = std::str::from_utf8(body) {
        match decode_plaintext(text) {
            Ok(p) => assert_eq!(encoding::lenient_decode(text).ok().as_deref(), Some(&p[..])),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Provider),
        }
        if let Ok(c) = ciphertext_str(body) {
            assert_eq!(c, text);
        }
    }
}

fn ciphertext_str(ciphertext: &[u8]) -> Result<&str> {
    std::str::from_utf8(ciphertext)
        .map_err(|_| Error::bad_format("a Vault ciphertext is ASCII (vault:vN:…)"))
}

#[async_trait]
impl Provider for VaultProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Vault
    }

    async fn wrap(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: Option<&EncryptionContext>,
    ) -> Result<Vec<u8>> {
        let name = Self::key_name(key_id)?;
        self.ensure_derived(key_id).await?;
        let mut opts = EncryptDataRequest::builder();
        if let Some(c) = context_b64(context) {
            opts.context(c);
        }
        let out = vaultrs::transit::data::encrypt(
            self.client.as_ref(),
            &self.mount,
            name,
            &encoding::strict_encode(plaintext),
            Some(&mut opts),
        )
        .await
        .map_err(|e| map_client_error("encrypt", key_id, e))?;
        Ok(out.ciphertext.into_bytes())
    }

    async fn unwrap(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: Option<&EncryptionContext>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let name = Self::key_name(key_id)?;
        self.ensure_derived(key_id).await?;
        let mut opts = DecryptDataRequest::builder();
        if let Some(c) = context_b64(context) {
            opts.context(c);
        }
        let out = vaultrs::transit::data::decrypt(
            self.client.as_ref(),
            &self.mount,
            name,
            ciphertext_str(ciphertext)?,
            Some(&mut opts),
        )
        .await
        .map_err(|e| map_client_error("decrypt", key_id, e))?;
        decode_plaintext(&out.plaintext)
    }

    async fn rewrap(&self, ciphertext: &[u8], from: KeyRef<'_>, to: KeyRef<'_>) -> Result<Vec<u8>> {
        if !self.native_rewrap(from, to) {
            let plaintext = self.unwrap(from.key_id, ciphertext, from.context).await?;
            return self.wrap(to.key_id, &plaintext, to.context).await;
        }
        let name = Self::key_name(to.key_id)?;
        self.ensure_derived(to.key_id).await?;
        let mut opts = RewrapDataRequest::builder();
        if let Some(c) = context_b64(to.context) {
            opts.context(c);
        }
        let out = vaultrs::transit::data::rewrap(
            self.client.as_ref(),
            &self.mount,
            name,
            ciphertext_str(ciphertext)?,
            Some(&mut opts),
        )
        .await
        .map_err(|e| map_client_error("rewrap", to.key_id, e))?;
        Ok(out.ciphertext.into_bytes())
    }

    /// Transit `rewrap` keeps the key and the context: native only when neither changes.
    fn native_rewrap(&self, from: KeyRef<'_>, to: KeyRef<'_>) -> bool {
        from.key_id == to.key_id && context_b64(from.context) == context_b64(to.context)
    }

    fn max_batch(&self) -> usize {
        self.batch_size
    }

    async fn unwrap_batch(
        &self,
        key_id: &str,
        items: &[(&[u8], Option<&EncryptionContext>)],
    ) -> Result<Vec<Result<Zeroizing<Vec<u8>>>>> {
        let input = items
            .iter()
            .map(|(ct, ctx)| {
                let mut item = serde_json::json!({ "ciphertext": ciphertext_str(ct)? });
                if let Some(c) = context_b64(*ctx) {
                    item["context"] = c.into();
                }
                Ok(item)
            })
            .collect::<Result<Vec<_>>>()?;
        self.ensure_derived(key_id).await?;
        Ok(self
            .batch("decrypt", key_id, input)
            .await?
            .into_iter()
            .map(|r| {
                r.and_then(|v| {
                    decode_plaintext(
                        v.get("plaintext")
                            .and_then(|p| p.as_str())
                            .unwrap_or_default(),
                    )
                })
            })
            .collect())
    }

    async fn wrap_batch(
        &self,
        key_id: &str,
        items: &[(&[u8], Option<&EncryptionContext>)],
    ) -> Result<Vec<Result<Vec<u8>>>> {
        let input = items
            .iter()
            .map(|(pt, ctx)| {
                let mut item = serde_json::json!({ "plaintext": encoding::strict_encode(pt) });
                if let Some(c) = context_b64(*ctx) {
                    item["context"] = c.into();
                }
                item
            })
            .collect();
        self.ensure_derived(key_id).await?;
        Ok(self
            .batch("encrypt", key_id, input)
            .await?
            .into_iter()
            .map(|r| {
                r.and_then(|v| {
                    v.get("ciphertext")
                        .and_then(|c| c.as_str())
                        .map(|c| c.as_bytes().to_vec())
                        .ok_or_else(|| {
                            Error::new(ErrorKind::Provider, "Vault batch item without ciphertext")
                        })
                })
            })
            .collect())
    }
}

impl fmt::Debug for VaultProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultProvider")
            .field("address", &self.client.settings.address.as_str())
            .field("mount", &self.mount)
            .field("namespace", &self.client.settings.namespace)
            .field("batch_size", &self.batch_size)
            .field("non_derived_keys", &self.non_derived)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_mapping_checks_messages_first() {
        let e = map_status(
            "decrypt",
            "vault/k",
            500,
            vec!["cipher: message authentication failed".into()],
        );
        assert_eq!(
            (e.kind(), e.is_retryable()),
            (ErrorKind::DecryptionFailed, false)
        );
        let e = map_status(
            "decrypt",
            "vault/k",
            400,
            vec!["ciphertext or signature version is disallowed by policy (too old)".into()],
        );
        assert_eq!(e.kind(), ErrorKind::KeyUnusable);
        assert!(e.to_string().contains("min_decryption_version"));
        let e = map_status(
            "decrypt",
            "vault/k",
            403,
            vec!["1 error occurred:\n\t* permission denied\n\n".into()],
        );
        assert_eq!(e.kind(), ErrorKind::AccessDenied);
        let e = map_status("encrypt", "vault/k", 503, vec!["Vault is sealed".into()]);
        assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::Provider, true));
        assert!(VaultProvider::connect("not a url", "t", None).is_err());
    }

    #[test]
    fn non_derived_setting_and_batch_refusals() {
        assert_eq!(NonDerivedKeys::parse(None).unwrap(), NonDerivedKeys::Refuse);
        assert_eq!(
            NonDerivedKeys::parse(Some(" Warn ")).unwrap(),
            NonDerivedKeys::Warn
        );
        assert_eq!(
            NonDerivedKeys::parse(Some("refuse")).unwrap(),
            NonDerivedKeys::Refuse
        );
        assert_eq!(
            NonDerivedKeys::parse(Some("off")).unwrap_err().kind(),
            ErrorKind::Config
        );
        // OpenBao 2.7.2's answer to a batch of 250 (plaintext, context) items
        let refused = vec![
            "refused JSON input due to high complexity: exceeded maximum number of strings".into(),
        ];
        assert!(too_complex(400, &refused));
        assert!(too_complex(413, &[]));
        assert!(!too_complex(
            400,
            &["cipher: message authentication failed".into()]
        ));
        let p = VaultProvider::connect("http://127.0.0.1:9", "t", None).unwrap();
        assert_eq!(p.max_batch(), BATCH_SIZE);
        assert_eq!(p.batch_size(0).max_batch(), 1);
    }
}
