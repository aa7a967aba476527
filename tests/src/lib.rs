//! Support code of the cross-crate integration tests: isolated real databases, the models and
//! schema of the behavioural suite, and provider wrappers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_debug_implementations,
    clippy::duplicated_attributes
)]

/// The workspace README's code blocks, compiled and run as doc tests here (this crate depends
/// on every crate they use).
#[doc = include_str!("../../README.md")]
pub mod readme {}

pub mod db;
pub mod models;
pub mod openbao;
pub mod schema;
pub mod sea;

pub use openbao::{vault_post, vault_provider, vault_url};

/// The Python used for the independent decoders and producers (`tests/scripts/*.py`): the
/// venv of scripts/test.sh (`KMS_FIELDS_PYTHON`), else `.venv/bin/python`, else `python3`.
pub fn python() -> std::process::Command {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python");
    let exe = std::env::var("KMS_FIELDS_PYTHON")
        .ok()
        .or_else(|| std::path::Path::new(venv).exists().then(|| venv.to_owned()))
        .unwrap_or_else(|| "python3".to_owned());
    std::process::Command::new(exe)
}

/// A script of `tests/scripts`.
pub fn script(name: &str) -> String {
    format!("{}/scripts/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A kms_rails `<attr>_enc` value made as the gem makes it (tests/scripts/kms_rails_value.py:
/// GenerateDataKey on moto with the one-pair context, AES-256-CBC, MessagePack).
pub fn kms_rails_value(key_id: &str, context: (&str, &str), plaintext: &str) -> Vec<u8> {
    let out = python()
        .arg(script("kms_rails_value.py"))
        .args([moto_url().as_str(), key_id, context.0, context.1, plaintext])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    hex::decode(String::from_utf8_lossy(&out.stdout).trim()).expect("hex")
}

/// The Ruby gems' vectors (the copy in kms-fields/tests/data).
pub fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!(
        "../../kms-fields/tests/data/kms_encrypted_lockbox.json"
    ))
    .expect("vectors")
}

/// moto's endpoint (scripts/test.sh starts scripts/moto_kms.py and exports it).
pub fn moto_url() -> String {
    std::env::var("KMS_FIELDS_MOTO_URL").unwrap_or_else(|_| {
        panic!("KMS_FIELDS_MOTO_URL is not set: run scripts/test.sh (it starts moto)")
    })
}

/// A real aws-sdk-kms client pointed at moto.
pub async fn moto_client() -> aws_sdk_kms::Client {
    let conf = kms_fields::provider::aws::AwsProvider::default_config()
        .endpoint_url(moto_url())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .load()
        .await;
    aws_sdk_kms::Client::new(&conf)
}

/// A `Kms` whose AWS provider is moto.
pub fn moto_kms() -> kms_fields::Kms {
    let client = kms_fields::blocking::block_on(moto_client()).expect("runtime");
    kms_fields::Kms::builder()
        .insecure_test_key()
        .aws(kms_fields::provider::aws::AwsProvider::new(client))
        .build()
}

/// A fresh key on moto; returns its ARN.
pub fn moto_key() -> String {
    kms_fields::blocking::block_on(async {
        let c = moto_client().await;
        c.create_key()
            .send()
            .await
            .expect("CreateKey")
            .key_metadata
            .expect("metadata")
            .arn
            .expect("arn")
    })
    .expect("runtime")
}

/// A provider wrapper that adds latency to every call (fixed, or uniform in a range) and
/// records how many calls were in flight at most. For benchmarks and concurrency tests.
#[derive(Debug)]
pub struct LatencyProvider {
    inner: std::sync::Arc<dyn kms_fields::Provider>,
    min: std::time::Duration,
    max: std::time::Duration,
    in_flight: std::sync::atomic::AtomicUsize,
    /// The most calls seen in flight at once.
    pub peak: std::sync::atomic::AtomicUsize,
}

impl LatencyProvider {
    /// `delay` added to each call of `inner`.
    pub fn fixed(inner: impl kms_fields::Provider + 'static, delay: std::time::Duration) -> Self {
        Self::uniform(inner, delay, delay)
    }

    /// A delay drawn uniformly from `min..=max` for each call.
    pub fn uniform(
        inner: impl kms_fields::Provider + 'static,
        min: std::time::Duration,
        max: std::time::Duration,
    ) -> Self {
        Self {
            inner: std::sync::Arc::new(inner),
            min,
            max,
            in_flight: Default::default(),
            peak: Default::default(),
        }
    }

    async fn delayed<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(now, SeqCst);
        let spread = self.max.saturating_sub(self.min).as_nanos() as u64;
        let extra = if spread == 0 {
            0
        } else {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).expect("random");
            u64::from_le_bytes(b) % (spread + 1)
        };
        tokio::time::sleep(self.min + std::time::Duration::from_nanos(extra)).await;
        let out = f.await;
        self.in_flight.fetch_sub(1, SeqCst);
        out
    }
}

#[async_trait::async_trait]
impl kms_fields::Provider for LatencyProvider {
    fn kind(&self) -> kms_fields::ProviderKind {
        self.inner.kind()
    }
    async fn wrap(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: Option<&kms_fields::EncryptionContext>,
    ) -> kms_fields::Result<Vec<u8>> {
        self.delayed(self.inner.wrap(key_id, plaintext, context))
            .await
    }
    async fn unwrap(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: Option<&kms_fields::EncryptionContext>,
    ) -> kms_fields::Result<zeroize::Zeroizing<Vec<u8>>> {
        self.delayed(self.inner.unwrap(key_id, ciphertext, context))
            .await
    }
    // a wrapped provider keeps its native re-wrap and batch calls (one delay per request)
    async fn rewrap(
        &self,
        ciphertext: &[u8],
        from: kms_fields::provider::KeyRef<'_>,
        to: kms_fields::provider::KeyRef<'_>,
    ) -> kms_fields::Result<Vec<u8>> {
        self.delayed(self.inner.rewrap(ciphertext, from, to)).await
    }
    fn native_rewrap(
        &self,
        from: kms_fields::provider::KeyRef<'_>,
        to: kms_fields::provider::KeyRef<'_>,
    ) -> bool {
        self.inner.native_rewrap(from, to)
    }
    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }
    async fn unwrap_batch(
        &self,
        key_id: &str,
        items: &[(&[u8], Option<&kms_fields::EncryptionContext>)],
    ) -> kms_fields::Result<Vec<kms_fields::Result<zeroize::Zeroizing<Vec<u8>>>>> {
        self.delayed(self.inner.unwrap_batch(key_id, items)).await
    }
    async fn wrap_batch(
        &self,
        key_id: &str,
        items: &[(&[u8], Option<&kms_fields::EncryptionContext>)],
    ) -> kms_fields::Result<Vec<kms_fields::Result<Vec<u8>>>> {
        self.delayed(self.inner.wrap_batch(key_id, items)).await
    }
}

/// The callback of a [`HookProvider`]: gets the context of the call.
type Hook = Box<dyn Fn(Option<&kms_fields::EncryptionContext>) + Send + Sync>;

/// A provider wrapper that calls a hook with the context of every unwrap (or every wrap)
/// before doing it — a way for tests to act (e.g. write the row) or look (e.g. at the
/// database's transaction state) at the exact moment of a KMS call.
pub struct HookProvider {
    inner: std::sync::Arc<dyn kms_fields::Provider>,
    on_unwrap: Option<Hook>,
    on_wrap: Option<Hook>,
}

impl HookProvider {
    /// Wrap `inner`, calling `hook` before each unwrap.
    pub fn new(
        inner: impl kms_fields::Provider + 'static,
        hook: impl Fn(Option<&kms_fields::EncryptionContext>) + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner: std::sync::Arc::new(inner),
            on_unwrap: Some(Box::new(hook)),
            on_wrap: None,
        }
    }

    /// Wrap `inner`, calling `hook` before each wrap (the `Encrypt` of a save).
    pub fn on_wrap(
        inner: impl kms_fields::Provider + 'static,
        hook: impl Fn(Option<&kms_fields::EncryptionContext>) + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner: std::sync::Arc::new(inner),
            on_unwrap: None,
            on_wrap: Some(Box::new(hook)),
        }
    }
}

impl std::fmt::Debug for HookProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookProvider")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl kms_fields::Provider for HookProvider {
    fn kind(&self) -> kms_fields::ProviderKind {
        self.inner.kind()
    }
    async fn wrap(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: Option<&kms_fields::EncryptionContext>,
    ) -> kms_fields::Result<Vec<u8>> {
        if let Some(hook) = &self.on_wrap {
            hook(context);
        }
        self.inner.wrap(key_id, plaintext, context).await
    }
    async fn unwrap(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: Option<&kms_fields::EncryptionContext>,
    ) -> kms_fields::Result<zeroize::Zeroizing<Vec<u8>>> {
        if let Some(hook) = &self.on_unwrap {
            hook(context);
        }
        self.inner.unwrap(key_id, ciphertext, context).await
    }
}

/// Insert `n` users (email + phone, both keys, version 1 with the test key) in batches.
pub fn seed_users<C>(conn: &mut C, n: usize) -> Vec<i32>
where
    C: kms_fields_diesel::KmsConnection,
    diesel::query_builder::InsertStatement<
        schema::users::table,
        <models::User as diesel::Insertable<schema::users::table>>::Values,
    >: diesel::query_dsl::methods::ExecuteDsl<C>,
    diesel::query_builder::InsertStatement<
        schema::users::table,
        <Vec<models::User> as diesel::Insertable<schema::users::table>>::Values,
    >: diesel::query_dsl::methods::ExecuteDsl<C>,
{
    let kms = kms_fields::Kms::new();
    let mut ids = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let end = (start + 1000).min(n);
        let mut batch: Vec<models::User> = (start..end)
            .map(|i| {
                let mut u = models::User::default();
                u.set_email_blocking(&kms, Some(&format!("user{i}@example.org")))
                    .expect("set");
                u.set_phone_blocking(&kms, Some(&format!("+1 555 {i:04}")))
                    .expect("set");
                u
            })
            .collect();
        kms_fields_diesel::insert_many(conn, &kms, schema::users::table, &mut batch, 128)
            .expect("insert_many");
        ids.extend(batch.iter().map(|u| u.id.expect("id")));
        start = end;
    }
    ids
}

/// The drongo Cloud KMS emulator started by scripts/test.sh.
pub fn drongo_url() -> String {
    std::env::var("KMS_FIELDS_DRONGO_URL").unwrap_or_else(|_| {
        panic!("KMS_FIELDS_DRONGO_URL is not set: run scripts/test.sh (it starts drongo)")
    })
}

/// A fresh crypto key on drongo; returns its name `projects/…/cryptoKeys/…`.
pub fn drongo_key() -> String {
    let ring = db::unique("ring");
    let base = format!(
        "{}/v1/projects/kmsf/locations/global/keyRings",
        drongo_url()
    );
    let post = |url: String, body: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
                body,
                &url,
            ])
            .output()
            .expect("curl");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    post(format!("{base}?keyRingId={ring}"), "{}");
    let r = post(
        format!("{base}/{ring}/cryptoKeys?cryptoKeyId=users"),
        r#"{"purpose":"ENCRYPT_DECRYPT"}"#,
    );
    assert!(r.contains("cryptoKeys/users"), "{r}");
    format!("projects/kmsf/locations/global/keyRings/{ring}/cryptoKeys/users")
}

/// A `Kms` whose Google Cloud KMS provider is drongo.
pub fn drongo_kms() -> kms_fields::Kms {
    let gcp = kms_fields::blocking::run(kms_fields::provider::gcp::GcpProvider::anonymous(
        &drongo_url(),
    ))
    .expect("gcp client");
    kms_fields::Kms::builder()
        .insecure_test_key()
        .gcp(gcp)
        .build()
}

/// An S3 bucket of its own on moto (`KMS_FIELDS_MOTO_URL`), through object_store. The bucket is
/// created with a plain `PUT /<bucket>` (object_store cannot create buckets).
pub fn moto_s3_store(tag: &str) -> std::sync::Arc<dyn object_store::ObjectStore> {
    use std::io::{Read, Write};
    let url = moto_url();
    let bucket = db::unique(&format!("kmsf-{tag}"))
        .to_lowercase()
        .replace('_', "-");
    let hostport = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut conn = std::net::TcpStream::connect(&hostport)
        .unwrap_or_else(|e| panic!("cannot reach moto at {url}: {e}"));
    write!(
        conn,
        "PUT /{bucket} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("CreateBucket request");
    let mut response = String::new();
    conn.read_to_string(&mut response)
        .expect("CreateBucket response");
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "CreateBucket {bucket}: {response}"
    );
    std::sync::Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&url)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(&bucket)
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .expect("S3 store"),
    )
}

/// The context the test key embedded in a stored key column (test-key values carry it as MIME
/// base64 after the second `:`).
pub fn embedded_context(stored: &str) -> String {
    let raw = kms_fields::StoredKey::parse(stored).unwrap().ciphertext;
    let ctx_b64 = raw.split(|b| *b == b':').nth(2).unwrap();
    String::from_utf8(
        kms_fields::encoding::lenient_decode(std::str::from_utf8(ctx_b64).unwrap()).unwrap(),
    )
    .unwrap()
}
