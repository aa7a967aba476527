//! Encrypted attachments: encrypt (put) and decrypt (get) throughput of a 1 GiB stream to the
//! local file system (a temp dir) and to the in-memory store, with each AES-256-GCM backend
//! compiled in, a plain (unencrypted) baseline, the peak RSS of each run, and
//! `openssl speed -evp aes-256-gcm` on the same machine for comparison.
//!
//! ```text
//! cargo bench -p kms-fields --features attachments,aws-lc --bench attachments
//! ATTACH_BENCH_MIB=256 cargo bench -p kms-fields --features attachments --bench attachments
//! ```
//!
//! The source is an `AsyncRead` replaying one 1 MiB random buffer, so the figures are the
//! pipeline's (segmenting, AES-GCM, upload, store), not a generator's. Peak RSS is the kernel's
//! `VmHWM`, reset before each run through `/proc/self/clear_refs`; InMemory holds the object
//! itself, so its RSS includes the 1 GiB (and, while a multipart upload completes, a copy).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::StreamExt;
use kms_fields::DataKey;
use kms_fields::attachments::format::{Header, encrypt_to_vec};
use kms_fields::attachments::{AttachmentKey, AttachmentStore, Mode};
use kms_fields::cipher::Backend;
use object_store::ObjectStore;
use object_store::path::Path;
use tokio::io::{AsyncRead, ReadBuf};

/// `len` bytes replaying `block`.
struct Replay {
    block: Arc<Vec<u8>>,
    pos: usize,
    remaining: u64,
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64)
            .min(self.remaining)
            .min((self.block.len() - self.pos) as u64) as usize;
        let start = self.pos;
        buf.put_slice(&self.block[start..start + n]);
        self.pos = (self.pos + n) % self.block.len();
        self.remaining -= n as u64;
        Poll::Ready(Ok(()))
    }
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn mb_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

async fn run(
    label: &str,
    store: Arc<dyn ObjectStore>,
    mode: Mode,
    backend: Backend,
    block: &Arc<Vec<u8>>,
    size: u64,
) {
    let attachments = AttachmentStore::builder(store)
        .mode(mode)
        .backend(backend)
        .build()
        .unwrap();
    let key = AttachmentKey::new(&DataKey::generate().unwrap(), "bench");
    let path = Path::from("bench/object.bin");

    reset_peak_rss();
    let t = Instant::now();
    let out = attachments
        .put(
            &path,
            &key,
            Replay {
                block: block.clone(),
                pos: 0,
                remaining: size,
            },
        )
        .await
        .unwrap();
    let put_secs = t.elapsed().as_secs_f64();
    let put_rss = peak_rss_mib();
    assert_eq!(out.size, size);

    reset_peak_rss();
    let t = Instant::now();
    let mut stream = attachments.get(&path, &key).await.unwrap();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        total += chunk.unwrap().len() as u64;
    }
    let get_secs = t.elapsed().as_secs_f64();
    let get_rss = peak_rss_mib();
    assert_eq!(total, size);
    attachments.delete(&path).await.unwrap();

    // InMemory in plain mode hands out the stored `Bytes` itself: no rate to speak of.
    let get_rate = if get_secs < 0.01 {
        "zero-copy".to_owned()
    } else {
        format!("{:.0} MB/s", mb_s(size, get_secs))
    };
    println!(
        "{label:<34} encrypt/put {:>7.0} MB/s ({put_secs:>5.2} s, peak RSS {put_rss:>6.0} MiB)   \
         decrypt/get {get_rate:>12} ({get_secs:>5.2} s, peak RSS {get_rss:>6.0} MiB)",
        mb_s(size, put_secs),
    );
}

fn cipher_only(backend: Backend, block: &[u8]) {
    // AES-GCM alone over 64 KiB segments, in memory: the ceiling for the pipeline.
    let key = DataKey::generate().unwrap();
    let header = Header::generate(64 << 10).unwrap();
    let rounds = 256; // 256 MiB
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(encrypt_to_vec(backend, &key, "bench", header, block).unwrap());
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{:<34} {:>7.0} MB/s (format::encrypt_to_vec, 64 KiB segments, in memory)",
        format!("format only, {backend:?}"),
        mb_s(rounds * block.len() as u64, secs)
    );
    // Backend::seal alone, in place on one reused 64 KiB buffer (no copies, no allocations).
    let mut buf = block[..64 << 10].to_vec();
    buf.reserve(16);
    let k = [7u8; 32];
    let n = 4096u64; // 256 MiB
    let t = Instant::now();
    for i in 0..n {
        buf.truncate(64 << 10);
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&i.to_be_bytes());
        backend.seal(&k, &nonce, b"", &mut buf, 0).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{:<34} {:>7.0} MB/s (Backend::seal in place, 64 KiB)",
        format!("seal only, {backend:?}"),
        mb_s(n * (64 << 10), secs)
    );
}

fn openssl() {
    match std::process::Command::new("openssl")
        .args(["speed", "-seconds", "1", "-evp", "aes-256-gcm"])
        .output()
    {
        Ok(out) if out.status.success() => {
            println!("\n$ openssl speed -seconds 1 -evp aes-256-gcm");
            let text = String::from_utf8_lossy(&out.stdout);
            for line in text
                .lines()
                .filter(|l| l.starts_with("type") || l.to_lowercase().starts_with("aes"))
            {
                println!("{line}");
            }
            println!("(in 1000s of bytes per second)");
        }
        Ok(out) => println!(
            "\nopenssl speed failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
        ),
        Err(_) => println!("\nopenssl not found: no comparison figures"),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let mib: u64 = std::env::var("ATTACH_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 8 } else { 1024 });
    let size = mib << 20;
    let mut block = vec![0u8; 1 << 20];
    getrandom::fill(&mut block).unwrap();
    let block = Arc::new(block);

    println!(
        "attachments: {mib} MiB stream, 64 KiB segments, 8 MiB parts, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for &backend in Backend::all() {
        cipher_only(backend, &block[..64 << 10].repeat(16));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let local = || -> Arc<dyn ObjectStore> {
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap())
        };
        for &backend in Backend::all() {
            let label = format!("LocalFileSystem, {backend:?}");
            run(&label, local(), Mode::Encrypted, backend, &block, size).await;
        }
        run(
            "LocalFileSystem, plain",
            local(),
            Mode::Plain,
            Backend::default(),
            &block,
            size,
        )
        .await;
        for &backend in Backend::all() {
            let label = format!("InMemory, {backend:?}");
            let mem = Arc::new(object_store::memory::InMemory::new());
            run(&label, mem, Mode::Encrypted, backend, &block, size).await;
        }
        let mem = Arc::new(object_store::memory::InMemory::new());
        run(
            "InMemory, plain",
            mem,
            Mode::Plain,
            Backend::default(),
            &block,
            size,
        )
        .await;
    });
    if !quick {
        openssl();
    }
}
