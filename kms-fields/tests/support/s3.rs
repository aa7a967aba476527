//! An S3 bucket of its own on moto's server (`KMS_FIELDS_MOTO_URL`), through object_store.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use object_store::ObjectStore;

fn moto_url() -> String {
    std::env::var("KMS_FIELDS_MOTO_URL").unwrap_or_else(|_| {
        panic!(
            "KMS_FIELDS_MOTO_URL is not set: the S3 attachment tests need moto's server. Run \
             scripts/test.sh, or start `moto_server -H 127.0.0.1 -p 5005` and export \
             KMS_FIELDS_MOTO_URL=http://127.0.0.1:5005"
        )
    })
}

static BUCKETS: AtomicU64 = AtomicU64::new(0);

/// Create a bucket with a plain `PUT /<bucket>` (moto does not check signatures for it;
/// object_store cannot create buckets).
fn create_bucket(url: &str, bucket: &str) {
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
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
        "CreateBucket {bucket} on moto failed: {}",
        response.lines().next().unwrap_or("")
    );
}

pub fn s3_store(tag: &str) -> Arc<dyn ObjectStore> {
    let url = moto_url();
    let bucket = format!(
        "kmsf-{tag}-{}-{}-{}",
        std::process::id(),
        BUCKETS.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            % 1_000_000
    )
    .to_lowercase()
    .replace('_', "-");
    create_bucket(&url, &bucket);
    Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&url)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(&bucket)
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap(),
    )
}
