//! 100 MiB streamed through an encrypted attachment store — to the local file system and to
//! moto's S3 (multipart) — with the heap measured by a counting global allocator (peak live
//! bytes, `peak_alloc`): the upload and the download must stay far below the object's size.
//! The data comes from a deterministic pseudo-random `AsyncRead` and is compared by SHA-256,
//! so it is never held in memory. (Not InMemory: that store holds the object itself.)
//!
//! A separate test binary, so no other test allocates meanwhile; the two tests take a lock.
#![cfg(feature = "attachments")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::await_holding_lock
)]

#[path = "support/s3.rs"]
mod s3;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::StreamExt;
use kms_fields::DataKey;
use kms_fields::attachments::{AttachmentKey, AttachmentStore};
use object_store::ObjectStore;
use object_store::path::Path;
use peak_alloc::PeakAlloc;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

static SERIAL: Mutex<()> = Mutex::new(());

const SIZE: u64 = 100 << 20;
const LIMIT: usize = 48 << 20;

/// `len` pseudo-random bytes (xorshift64*), produced as they are read; the byte sequence does
/// not depend on how reads are split.
struct Prng {
    state: u64,
    word: [u8; 8],
    used: usize,
    remaining: u64,
}

impl Prng {
    fn new(seed: u64, len: u64) -> Self {
        Self {
            state: seed | 1,
            word: [0; 8],
            used: 8,
            remaining: len,
        }
    }

    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            if self.used == 8 {
                self.state ^= self.state >> 12;
                self.state ^= self.state << 25;
                self.state ^= self.state >> 27;
                self.word = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
                self.used = 0;
            }
            *b = self.word[self.used];
            self.used += 1;
        }
    }
}

impl AsyncRead for Prng {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // odd-sized reads, so segments straddle reads
        let n = (buf.remaining() as u64).min(self.remaining).min(50_001) as usize;
        let out = buf.initialize_unfilled_to(n);
        self.fill(out);
        buf.advance(n);
        self.remaining -= n as u64;
        Poll::Ready(Ok(()))
    }
}

fn expected_digest(seed: u64) -> Vec<u8> {
    let mut g = Prng::new(seed, SIZE);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 50_001];
    let mut left = SIZE;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        g.fill(&mut buf[..n]);
        h.update(&buf[..n]);
        left -= n as u64;
    }
    h.finalize().to_vec()
}

fn mib(n: usize) -> f64 {
    n as f64 / (1 << 20) as f64
}

async fn stream_100_mib(store: Arc<dyn ObjectStore>, what: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let attachments = AttachmentStore::new(store);
    let key = AttachmentKey::new(&DataKey::generate().unwrap(), "video");
    let path = Path::from("memory/100mib.bin");
    let digest = expected_digest(7);

    let baseline = HEAP.current_usage();
    HEAP.reset_peak_usage();
    let out = attachments
        .put(&path, &key, Prng::new(7, SIZE))
        .await
        .unwrap();
    assert_eq!(out.size, SIZE);
    assert!(out.multipart);
    let put_peak = HEAP.peak_usage().saturating_sub(baseline);

    let baseline = HEAP.current_usage();
    HEAP.reset_peak_usage();
    let mut stream = attachments.get(&path, &key).await.unwrap();
    let mut h = Sha256::new();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        total += chunk.len() as u64;
        h.update(&chunk);
    }
    let get_peak = HEAP.peak_usage().saturating_sub(baseline);
    assert_eq!(total, SIZE);
    assert_eq!(
        h.finalize().to_vec(),
        digest,
        "SHA-256 of the 100 MiB round trip"
    );

    println!(
        "{what}: 100 MiB put peak heap growth {:.1} MiB, get {:.1} MiB (limit {} MiB)",
        mib(put_peak),
        mib(get_peak),
        LIMIT >> 20
    );
    assert!(
        put_peak < LIMIT,
        "{what} put: peak heap grew by {:.1} MiB",
        mib(put_peak)
    );
    assert!(
        get_peak < LIMIT,
        "{what} get: peak heap grew by {:.1} MiB",
        mib(get_peak)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_fs_100_mib_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let fs = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    stream_100_mib(Arc::new(fs), "LocalFileSystem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_moto_100_mib_bounded_memory() {
    stream_100_mib(s3::s3_store("mem"), "moto S3").await;
}
