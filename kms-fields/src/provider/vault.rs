//! Vault / OpenBao transit (feature `vault`), through the `vaultrs` client.
//!
//! - Key id `vault/<key name>`, on a transit mount (default `transit`, configurable — kms_encrypted
//!   hard-codes it); keys created with `derived: true` so each record's context derives its own
//!   key.
//! - wrap = `POST <mount>/encrypt/<key>` with `plaintext` = base64 and `context` =
//!   base64(canonical context JSON); unwrap = `decrypt`; re-wrap = `rewrap` (no plaintext leaves
//!   Vault) when the key and context stay the same, else decrypt + encrypt.
//! - The stored provider ciphertext is Vault's ASCII `vault:vN:…`, so key columns start
//!   `v1:dmF1bHQ6` (DESIGN §3).
//! - Many wraps or unwraps of one key go in one request with `batch_input` (250 per request).
//! - [`VaultProvider::context_hash`] returns the audit-log hash of exactly the `context` string
//!   kms-fields sends (`sys/audit-hash/<path>`), so a record's Vault audit entries can be found.
//!   kms_encrypted hashes a differently serialised context there, which never matches.
//!
//! Errors: "message authentication failed" / "unable to decrypt" (wrong context, tampering) →
//! `DecryptionFailed`; a version under `min_decryption_version` → `KeyUnusable` naming it;
//! permission denied (an encrypt-only token asked to decrypt) → `AccessDenied`; missing key →
//! `KeyUnusable`; 5xx (other than an authentication failure), 429 and connection errors →
//! retryable `Provider`.
//!
//! OpenBao serves the same API. Two drifts are handled: older Vault (1.5–1.6) answers a wrong
//! context with HTTP 500, which is why messages are checked before status codes; and
//! `sys/audit-hash` is documented (by Vault and OpenBao alike) as answering `{"hash": …}` at the
//! top level, while a server may send the generic envelope with `data.hash` (or both), so
//! [`VaultProvider::context_hash`] reads either.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use vaultrs::api::transit::requests::{DecryptDataRequest, EncryptDataRequest, RewrapDataRequest};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use super::{KeyRef, Provider, ProviderKind};
use crate::context::EncryptionContext;
use crate::encoding;
use crate::error::{Error, ErrorKind, Result};

/// Items per `batch_input` request.
pub const BATCH_SIZE: usize = 250;

/// The Vault / OpenBao transit provider.
#[derive(Clone)]
pub struct VaultProvider {
    client: Arc<VaultClient>,
    mount: String,
}

impl VaultProvider {
    /// Use this client, with the `transit` mount.
    pub fn new(client: VaultClient) -> Self {
        Self {
            client: Arc::new(client),
            mount: "transit".into(),
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

    /// From `VAULT_ADDR`, `VAULT_TOKEN` and `VAULT_NAMESPACE` (optional).
    pub fn from_env() -> Result<Self> {
        let addr =
            std::env::var("VAULT_ADDR").map_err(|_| Error::config("VAULT_ADDR is not set"))?;
        let token =
            std::env::var("VAULT_TOKEN").map_err(|_| Error::config("VAULT_TOKEN is not set"))?;
        let ns = std::env::var("VAULT_NAMESPACE")
            .ok()
            .filter(|s| !s.is_empty());
        Self::connect(&addr, &token, ns.as_deref())
    }

    /// Use another transit mount path than `transit`.
    pub fn mount(mut self, mount: impl Into<String>) -> Self {
        self.mount = mount.into().trim_matches('/').to_owned();
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
        let http = &self.client.http;
        let url = format!("{}/v1/{path}", http.base.trim_end_matches('/'));
        let mut req = http
            .http
            .post(url)
            .header("Content-Type", "application/json");
        let settings = &self.client.settings;
        if !settings.token.is_empty() {
            req = req.header("X-Vault-Token", settings.token.as_str());
        }
        if let Some(ns) = &settings.namespace {
            req = req.header("X-Vault-Namespace", ns.as_str());
        }
        let body = serde_json::to_vec(body)
            .map_err(|e| Error::new(ErrorKind::Provider, format!("JSON: {e}")))?;
        let resp = req.body(body).send().await.map_err(|e| {
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

    async fn batch(
        &self,
        op: &str,
        key_id: &str,
        items: Vec<serde_json::Value>,
    ) -> Result<Vec<Result<serde_json::Value>>> {
        let name = Self::key_name(key_id)?;
        let body = serde_json::json!({ "batch_input": items });
        let (status, v) = self
            .post(&format!("{}/{op}/{name}", self.mount), &body)
            .await?;
        let results = v
            .get("data")
            .and_then(|d| d.get("batch_results"))
            .and_then(|r| r.as_array());
        let Some(results) = results else {
            return Err(map_status(op, key_id, status, messages(&v)));
        };
        if results.len() != items_len(&body) {
            return Err(Error::new(
                ErrorKind::Provider,
                format!(
                    "Vault {op} batch returned {} results for {} items",
                    results.len(),
                    items_len(&body)
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
    }
}

fn items_len(body: &serde_json::Value) -> usize {
    body.get("batch_input")
        .and_then(|b| b.as_array())
        .map_or(0, Vec::len)
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
        BATCH_SIZE
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
}
