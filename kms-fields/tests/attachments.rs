//! Encrypted attachments against three object stores: moto's S3 over HTTP (through
//! object_store's real S3 client), the local file system (a temp dir) and the in-memory store.
//! Every behavioural test runs on each (`store_tests!`). The S3 variants need moto:
//! `KMS_FIELDS_MOTO_URL` (scripts/test.sh starts it); without it they fail, they don't skip.
//!
//! The frozen format is pinned by `attachment_kat.json`, computed by an independent Python
//! implementation (`tests/data/gen_attachment_kat.py`), and cross-checked the other way by that
//! script's decoder.
#![cfg(feature = "attachments")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/s3.rs"]
mod s3;
use s3::s3_store;

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use kms_fields::attachments::format::{self, Header};
use kms_fields::attachments::{AttachmentKey, AttachmentStore, Mode, StoreSelector, TenantStores};
use kms_fields::cipher::Backend;
use kms_fields::{DataKey, ErrorKind};
use object_store::path::Path;
use object_store::{Attribute, GetOptions, ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::Value;
use tokio::io::AsyncReadExt;

// ---- stores ---------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Memory,
    Local,
    S3,
}

/// An object store of `kind`, isolated for one test (own temp dir / own bucket).
struct TestStore {
    store: Arc<dyn ObjectStore>,
    _dir: Option<tempfile::TempDir>,
}

fn test_store(kind: Kind, tag: &str) -> TestStore {
    match kind {
        Kind::Memory => TestStore {
            store: Arc::new(object_store::memory::InMemory::new()),
            _dir: None,
        },
        Kind::Local => {
            let dir = tempfile::tempdir().unwrap();
            let fs = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
            TestStore {
                store: Arc::new(fs),
                _dir: Some(dir),
            }
        }
        Kind::S3 => TestStore {
            store: s3_store(tag),
            _dir: None,
        },
    }
}

// ---- helpers --------------------------------------------------------------------------------

fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn key(seed: u8, name: &str) -> AttachmentKey {
    AttachmentKey::new(&DataKey::from_slice(&[seed; 32]).unwrap(), name)
}

fn small(store: &Arc<dyn ObjectStore>, mode: Mode) -> AttachmentStore {
    AttachmentStore::builder(store.clone())
        .mode(mode)
        .segment_size(1024)
        .build()
        .unwrap()
}

async fn raw(store: &Arc<dyn ObjectStore>, path: &Path) -> Vec<u8> {
    store
        .get(path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

async fn put_raw(store: &Arc<dyn ObjectStore>, path: &Path, bytes: Vec<u8>) {
    store.put(path, PutPayload::from(bytes)).await.unwrap();
}

/// Collect a stream; returns the delivered bytes and the error that ended it, if any.
async fn drain(
    mut s: kms_fields::attachments::AttachmentStream,
) -> (Vec<u8>, Option<kms_fields::Error>) {
    let mut out = Vec::new();
    while let Some(item) = s.next().await {
        match item {
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => {
                assert!(s.next().await.is_none(), "the stream ends after an error");
                return (out, Some(e));
            }
        }
    }
    (out, None)
}

/// The kind of error reading `path` gives, through `get` (error up front or as a stream item).
async fn read_error(store: &AttachmentStore, path: &Path, key: &AttachmentKey) -> ErrorKind {
    match store.get(path, key).await {
        Err(e) => e.kind(),
        Ok(s) => match drain(s).await {
            (_, Some(e)) => e.kind(),
            (data, None) => panic!("read of {path} succeeded with {} bytes", data.len()),
        },
    }
}

// ---- the per-store tests ------------------------------------------------------------------

async fn round_trips(kind: Kind) {
    let t = test_store(kind, "rt");
    let k = key(1, "contract");
    for (segment, sizes) in [
        (
            1024u32,
            vec![0usize, 1, 1023, 1024, 1025, 2048, 10 * 1024 + 17],
        ),
        (65536, vec![0, 1, 65536, 65537, 5 * 65536 + 3]),
    ] {
        let store = AttachmentStore::builder(t.store.clone())
            .segment_size(segment)
            .build()
            .unwrap();
        for n in sizes {
            let data = pattern(n, n as u64);
            let path = Path::from(format!("rt/{segment}/{n}"));
            let out = store.put(&path, &k, &data[..]).await.unwrap();
            let stored = format::encrypted_len(n as u64, segment).unwrap();
            assert_eq!(
                (out.size, out.stored_size, out.multipart),
                (n as u64, stored, false)
            );
            assert_eq!(raw(&t.store, &path).await.len() as u64, stored);

            let got = store.get(&path, &k).await.unwrap();
            assert_eq!(got.size(), n as u64);
            let (back, err) = drain(got).await;
            assert!(err.is_none(), "{n}: {err:?}");
            assert_eq!(back, data, "size {n}");

            let mut reader = store.get(&path, &k).await.unwrap().into_async_read();
            let mut via_read = Vec::new();
            reader.read_to_end(&mut via_read).await.unwrap();
            assert_eq!(via_read, data);

            let meta = store.head(&path).await.unwrap();
            assert_eq!(
                (
                    meta.size,
                    meta.stored_size,
                    meta.encrypted,
                    meta.format_version,
                    meta.segment_size
                ),
                (n as u64, stored, true, Some(1), Some(segment))
            );

            // the same bytes as a stream of odd-sized chunks
            let chunks: Vec<Result<Bytes, std::io::Error>> = data
                .chunks(777)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let path2 = Path::from(format!("rt/{segment}/{n}.stream"));
            let out = store
                .put_stream(&path2, &k, futures::stream::iter(chunks))
                .await
                .unwrap();
            assert_eq!(out.stored_size, stored);
            assert_eq!(store.get_bytes(&path2, &k).await.unwrap(), data);
        }
    }
}

async fn multipart(kind: Kind) {
    let t = test_store(kind, "mp");
    let store = AttachmentStore::builder(t.store.clone())
        .part_size(5 << 20)
        .build()
        .unwrap();
    let k = key(2, "scan");
    let data = pattern((11 << 20) + 12345, 7);
    let path = Path::from("mp/big.bin");
    let out = store.put(&path, &k, &data[..]).await.unwrap();
    assert!(out.multipart);
    assert_eq!(
        out.stored_size,
        format::encrypted_len(data.len() as u64, 65536).unwrap()
    );
    assert_eq!(store.get_bytes(&path, &k).await.unwrap(), data);
    // a range across the 5 MiB part boundary of the stored object
    let r = (5 << 20) - 100_000..(5 << 20) + 100_000;
    assert_eq!(
        store.get_range(&path, &k, r.clone()).await.unwrap(),
        &data[r.start as usize..r.end as usize]
    );
}

async fn ranges(kind: Kind) {
    let t = test_store(kind, "rg");
    let k = key(3, "doc");
    let data = pattern(10_000, 3);
    for mode in [Mode::Encrypted, Mode::Plain] {
        let store = small(&t.store, mode);
        let path = Path::from(format!("rg/{mode:?}"));
        store.put(&path, &k, &data[..]).await.unwrap();
        for r in [
            0..1024u64,   // exactly the first segment
            1024..2048,   // exactly the second
            2048..2049,   // first byte of a segment
            1023..1025,   // across a boundary
            5..10,        // inside one segment
            3000..9000,   // across many
            0..10_000,    // all
            9216..10_000, // the final (partial) segment
            9990..20_000, // end past the size: clamped
            9_999..u64::MAX,
        ] {
            let got = store.get_range(&path, &k, r.clone()).await.unwrap();
            let end = (r.end as usize).min(data.len());
            assert_eq!(&got[..], &data[r.start as usize..end], "{mode:?} {r:?}");
        }
        assert!(store.get_range(&path, &k, 5..5).await.unwrap().is_empty());
        #[allow(clippy::reversed_empty_ranges)]
        for bad in [10_000..10_001u64, 20_000..30_000, 6..5] {
            let e = store.get_range(&path, &k, bad.clone()).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidRange, "{mode:?} {bad:?}: {e}");
        }
        let e = store
            .get_range(&Path::from("rg/missing"), &k, 0..1)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }
    // an empty attachment
    let store = small(&t.store, Mode::Encrypted);
    let path = Path::from("rg/empty");
    store.put(&path, &k, &b""[..]).await.unwrap();
    assert!(store.get_range(&path, &k, 0..0).await.unwrap().is_empty());
    assert_eq!(
        store.get_range(&path, &k, 0..1).await.unwrap_err().kind(),
        ErrorKind::InvalidRange
    );
}

async fn head_delete_copy(kind: Kind) {
    let t = test_store(kind, "hdc");
    let store = small(&t.store, Mode::Encrypted);
    let k = key(4, "id-card");
    let data = pattern(3000, 4);
    let (a, b) = (Path::from("hdc/a"), Path::from("hdc/copy/b"));
    store.put(&a, &k, &data[..]).await.unwrap();

    store.copy(&a, &b).await.unwrap();
    assert_eq!(
        store.get_bytes(&b, &k).await.unwrap(),
        data,
        "a copy reads with the same key"
    );
    assert_eq!(
        store.get_range(&b, &k, 1000..2000).await.unwrap(),
        &data[1000..2000]
    );

    store.delete(&a).await.unwrap();
    let e = store.get(&a, &k).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.to_string(), "attachment not found: hdc/a");
    assert_eq!(
        store.head(&a).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        store.get_bytes(&a, &k).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    store.delete(&a).await.unwrap(); // idempotent on every store
    assert_eq!(
        store.copy(&a, &b).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(store.get_bytes(&b, &k).await.unwrap(), data);

    // head of a plain object through an encrypted store: reported as not encrypted
    put_raw(&t.store, &a, b"just some text".to_vec()).await;
    let meta = store.head(&a).await.unwrap();
    assert!(!meta.encrypted);
    assert_eq!(
        (meta.size, meta.stored_size, meta.format_version),
        (14, 14, None)
    );
    // an empty object
    put_raw(&t.store, &a, Vec::new()).await;
    let meta = store.head(&a).await.unwrap();
    assert_eq!((meta.size, meta.encrypted), (0, false));
    assert_eq!(
        store.get(&a, &k).await.unwrap_err().kind(),
        ErrorKind::BadFormat
    );
}

async fn metadata(kind: Kind) {
    let t = test_store(kind, "md");
    let k = key(5, "x");
    for (mode, format) in [(Mode::Encrypted, "1"), (Mode::Plain, "none")] {
        let store = small(&t.store, mode);
        let path = Path::from(format!("md/{mode:?}"));
        store.put(&path, &k, &b"hello"[..]).await.unwrap();
        let r = t
            .store
            .get_opts(&path, GetOptions::default())
            .await
            .unwrap();
        let attr = |a: Attribute| r.attributes.get(&a).map(|v| v.as_ref().to_owned());
        if kind == Kind::Local {
            // LocalFileSystem keeps no metadata; the header is authoritative anyway.
            assert!(r.attributes.is_empty());
            continue;
        }
        assert_eq!(
            attr(Attribute::Metadata("kms-fields-format".into())).as_deref(),
            Some(format)
        );
        if mode == Mode::Encrypted {
            assert_eq!(
                attr(Attribute::Metadata("kms-fields-segment-size".into())).as_deref(),
                Some("1024")
            );
            assert_eq!(
                attr(Attribute::ContentType).as_deref(),
                Some("application/octet-stream")
            );
            assert_eq!(
                store.head(&path).await.unwrap().format_metadata.as_deref(),
                Some("1")
            );
        }
    }
}

async fn plain_mode(kind: Kind) {
    let t = test_store(kind, "pl");
    let plain = AttachmentStore::plain(t.store.clone());
    let k = key(6, "ignored");
    let data = pattern(200_000, 6);
    let path = Path::from("pl/file");
    let out = plain.put(&path, &k, &data[..]).await.unwrap();
    assert_eq!((out.size, out.stored_size), (200_000, 200_000));
    assert_eq!(raw(&t.store, &path).await, data, "stored as is");
    assert_eq!(plain.get_bytes(&path, &k).await.unwrap(), data);
    let meta = plain.head(&path).await.unwrap();
    assert_eq!((meta.encrypted, meta.size), (false, 200_000));
    // an encrypted store refuses to guess
    let enc = AttachmentStore::new(t.store.clone());
    let e = enc.get(&path, &k).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadFormat, "{e}");
    assert_eq!(
        enc.get_range(&path, &k, 0..10).await.unwrap_err().kind(),
        ErrorKind::BadFormat
    );
    // migrate the tenant to encryption
    let new = key(7, "scan");
    plain
        .reencrypt_to(&path, &k, &enc, &path, &new)
        .await
        .unwrap();
    assert!(enc.head(&path).await.unwrap().encrypted);
    assert_eq!(enc.get_bytes(&path, &new).await.unwrap(), data);
}

async fn tampering(kind: Kind) {
    let t = test_store(kind, "tp");
    let store = small(&t.store, Mode::Encrypted);
    let k = key(8, "contract");
    let data = pattern(5000, 8); // segments 0..=3 full, 4 holds 904 bytes
    let (a, other) = (Path::from("tp/a"), Path::from("tp/other"));
    store.put(&a, &k, &data[..]).await.unwrap();
    store.put(&other, &k, &pattern(5000, 9)[..]).await.unwrap();
    let good = raw(&t.store, &a).await;
    let foreign = raw(&t.store, &other).await;
    let full = 1024 + 16;
    let seg = |i: usize| 48 + i * full..(48 + (i + 1) * full).min(good.len());

    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    cases.push(("drop the final segment", good[..seg(3).end].to_vec()));
    cases.push(("drop the final byte", good[..good.len() - 1].to_vec()));
    cases.push((
        "drop the final segment and a tag",
        good[..seg(3).end - 16].to_vec(),
    ));
    let mut swapped = good.clone();
    swapped[seg(1)].copy_from_slice(&good[seg(2)]);
    swapped[seg(2)].copy_from_slice(&good[seg(1)]);
    cases.push(("swap segments 1 and 2", swapped));
    let mut dup = good.clone();
    dup[seg(2)].copy_from_slice(&good[seg(1)]);
    cases.push(("duplicate segment 1", dup));
    for at in [
        48 + 10,
        seg(2).start + 500,
        good.len() - 1,
        20, /* salt */
        44, /* prefix */
        7,  /* segment size */
    ] {
        let mut flipped = good.clone();
        flipped[at] ^= 0x40;
        cases.push(("flip one byte", flipped));
    }
    let mut spliced = good.clone();
    spliced[seg(2)].copy_from_slice(&foreign[seg(2)]);
    cases.push(("a segment of another object under the same key", spliced));
    let mut header_swapped = good.clone();
    header_swapped[..48].copy_from_slice(&foreign[..48]);
    cases.push(("another object's header", header_swapped));
    let mut extended = good.clone();
    extended.extend_from_slice(&good[seg(4)]);
    cases.push(("the final segment appended twice", extended));

    for (i, (what, bytes)) in cases.into_iter().enumerate() {
        let p = Path::from(format!("tp/bad{i}"));
        put_raw(&t.store, &p, bytes).await;
        assert_eq!(
            read_error(&store, &p, &k).await,
            ErrorKind::DecryptionFailed,
            "{what}"
        );
    }

    // Verified segments before the bad one are delivered, then an error: never a clean end.
    let mut late = good.clone();
    late[seg(3).start + 3] ^= 1;
    let p = Path::from("tp/late");
    put_raw(&t.store, &p, late).await;
    let (delivered, err) = drain(store.get(&p, &k).await.unwrap()).await;
    assert_eq!(err.unwrap().kind(), ErrorKind::DecryptionFailed);
    assert_eq!(
        delivered,
        data[..3 * 1024],
        "only the verified segments 0..=2"
    );
    // ranged reads verify the segments they touch
    assert_eq!(
        store.get_range(&p, &k, 0..3072).await.unwrap(),
        &data[..3072]
    );
    let e = store.get_range(&p, &k, 3000..3100).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DecryptionFailed);
    let p = Path::from("tp/truncated");
    put_raw(&t.store, &p, good[..seg(3).end].to_vec()).await;
    let e = store.get_range(&p, &k, 3500..4000).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::DecryptionFailed,
        "the new 'final' segment was not final"
    );

    // wrong data key, wrong logical name
    assert_eq!(
        read_error(&store, &a, &key(9, "contract")).await,
        ErrorKind::DecryptionFailed
    );
    assert_eq!(
        read_error(&store, &a, &key(8, "invoice")).await,
        ErrorKind::DecryptionFailed
    );
    assert_eq!(
        store
            .get_range(&a, &key(8, "invoice"), 0..10)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::DecryptionFailed
    );

    // not an attachment at all, an unknown version
    let p = Path::from("tp/zip");
    put_raw(
        &t.store,
        &p,
        b"PK\x03\x04 a zip file, not encrypted at all......................".to_vec(),
    )
    .await;
    assert_eq!(read_error(&store, &p, &k).await, ErrorKind::BadFormat);
    let mut v2 = good.clone();
    v2[4] = 2;
    put_raw(&t.store, &p, v2).await;
    let e = store.get(&p, &k).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadFormat);
    assert!(e.to_string().contains("version 2"), "{e}");
    put_raw(&t.store, &p, good[..30].to_vec()).await;
    assert_eq!(
        read_error(&store, &p, &k).await,
        ErrorKind::DecryptionFailed,
        "a truncated header"
    );

    // errors and Debug never show plaintext or key bytes
    let e = store
        .get_bytes(&Path::from("tp/late"), &k)
        .await
        .unwrap_err();
    let text = format!("{e} {e:?} {k:?}");
    assert!(!text.contains("0808080808"), "{text}");
}

async fn reencrypt(kind: Kind) {
    let t = test_store(kind, "re");
    let store = small(&t.store, Mode::Encrypted);
    let (old, new) = (key(10, "contract"), key(11, "contract"));
    let data = pattern(4321, 10);
    let path = Path::from("re/contract.pdf");
    store.put(&path, &old, &data[..]).await.unwrap();
    let before = raw(&t.store, &path).await;

    let out = store.reencrypt(&path, &old, &new).await.unwrap();
    assert_eq!(out.size, data.len() as u64);
    let after = raw(&t.store, &path).await;
    assert_ne!(before[9..41], after[9..41], "a fresh salt");
    assert_eq!(
        read_error(&store, &path, &old).await,
        ErrorKind::DecryptionFailed
    );
    assert_eq!(store.get_bytes(&path, &new).await.unwrap(), data);

    // to another path and segment size
    let big = AttachmentStore::new(t.store.clone());
    let dest = Path::from("re/rotated.pdf");
    store
        .reencrypt_to(&path, &new, &big, &dest, &old)
        .await
        .unwrap();
    assert_eq!(big.head(&dest).await.unwrap().segment_size, Some(65536));
    assert_eq!(big.get_bytes(&dest, &old).await.unwrap(), data);

    // a failed re-encryption leaves the object as it was
    let e = store.reencrypt(&path, &old, &new).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DecryptionFailed);
    assert_eq!(raw(&t.store, &path).await, after);

    // read-only stores refuse every write, and still read
    let ro = store.read_only();
    let e = ro.put(&path, &new, &b"x"[..]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("read-only"), "{e}");
    for e in [
        ro.reencrypt(&path, &new, &old).await.unwrap_err(),
        ro.delete(&path).await.unwrap_err(),
        ro.copy(&path, &dest).await.unwrap_err(),
        store
            .reencrypt_to(&path, &new, &ro, &dest, &old)
            .await
            .unwrap_err(),
        ro.put_bytes(&path, &new, "x").await.unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    }
    assert_eq!(ro.get_bytes(&path, &new).await.unwrap(), data);
    assert_eq!(raw(&t.store, &path).await, after);
}

async fn known_answers(kind: Kind) {
    let t = test_store(kind, "kat");
    let kat = kat();
    let data_key = DataKey::from_slice(&hexv(&kat["data_key_hex"])).unwrap();
    for case in kat["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let segment = case["segment_size"].as_u64().unwrap() as u32;
        let plaintext = hexv(&case["plaintext_hex"]);
        let expected = hexv(&case["ciphertext_hex"]);
        let k = AttachmentKey::new(&data_key, name);
        let store = AttachmentStore::builder(t.store.clone())
            .segment_size(segment)
            .build()
            .unwrap();
        let path = Path::from(format!("kat/{}", expected.len()));
        // the streaming writer, with the header fixed
        store
            .put_with_header(&path, &k, kat_header(&kat, segment), &plaintext[..])
            .await
            .unwrap();
        assert_eq!(
            hex::encode(raw(&t.store, &path).await),
            hex::encode(&expected),
            "{name}"
        );
        // and Python's bytes decrypt here
        put_raw(&t.store, &path, expected.clone()).await;
        assert_eq!(
            store.get_bytes(&path, &k).await.unwrap(),
            plaintext,
            "{name}"
        );
    }
}

macro_rules! store_tests {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test(flavor = "multi_thread")] async fn $test() { super::$test(super::Kind::Memory).await } )*
        }
        mod local_fs {
            $( #[tokio::test(flavor = "multi_thread")] async fn $test() { super::$test(super::Kind::Local).await } )*
        }
        mod s3_moto {
            $( #[tokio::test(flavor = "multi_thread")] async fn $test() { super::$test(super::Kind::S3).await } )*
        }
    };
}

store_tests!(
    round_trips,
    multipart,
    ranges,
    head_delete_copy,
    metadata,
    plain_mode,
    tampering,
    reencrypt,
    known_answers,
);

// ---- the frozen format, without a store ---------------------------------------------------

fn kat() -> Value {
    serde_json::from_str(include_str!("data/attachment_kat.json")).unwrap()
}

fn hexv(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn kat_header(kat: &Value, segment: u32) -> Header {
    Header::with_salt_and_prefix(
        segment,
        hexv(&kat["salt_hex"]).try_into().unwrap(),
        hexv(&kat["nonce_prefix_hex"]).try_into().unwrap(),
    )
    .unwrap()
}

#[test]
fn known_answers_every_backend() {
    let kat = kat();
    let data_key = DataKey::from_slice(&hexv(&kat["data_key_hex"])).unwrap();
    assert_eq!(kat["cases"].as_array().unwrap().len(), 8);
    for case in kat["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let segment = case["segment_size"].as_u64().unwrap() as u32;
        let plaintext = hexv(&case["plaintext_hex"]);
        let header = kat_header(&kat, segment);
        assert_eq!(
            hex::encode(*format::derive_object_key(&data_key, &header, name)),
            case["object_key_hex"].as_str().unwrap(),
            "{name}"
        );
        for &backend in Backend::all() {
            let ct = format::encrypt_to_vec(backend, &data_key, name, header, &plaintext).unwrap();
            assert_eq!(
                hex::encode(&ct),
                case["ciphertext_hex"].as_str().unwrap(),
                "{name} {backend:?}"
            );
            let pt = format::decrypt_from_slice(backend, &data_key, name, &ct).unwrap();
            assert_eq!(&pt[..], &plaintext[..]);
        }
    }
}

/// The smallest vector, spelled out: header, then one final segment sealed with nonce
/// `prefix ‖ 00000000 ‖ 01`.
#[test]
fn one_byte_object_layout() {
    let kat = kat();
    let case = &kat["cases"][1];
    assert_eq!(case["name"], "one-byte");
    let ct = case["ciphertext_hex"].as_str().unwrap();
    assert_eq!(ct.len(), 2 * (48 + 1 + 16));
    assert_eq!(
        &ct[..96],
        concat!(
            "4b4d5346",                                                         // KMSF
            "01",                                                               // version
            "00000400",                                                         // segment size 1024
            "a0a1a2a3a4a5a6a7a8a9aaabacadaeafa0a1a2a3a4a5a6a7a8a9aaabacadaeaf", // salt
            "f0e1d2c3b4a596"                                                    // nonce prefix
        )
    );
}

fn python() -> std::process::Command {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python");
    let exe = std::env::var("KMS_FIELDS_PYTHON")
        .ok()
        .or_else(|| std::path::Path::new(venv).exists().then(|| venv.to_owned()))
        .unwrap_or_else(|| "python3".to_owned());
    std::process::Command::new(exe)
}

/// Objects written by the store (random salt, several segments) decode with the independent
/// Python implementation; a tampered one does not.
#[tokio::test]
async fn python_decodes_what_we_write() {
    let mem: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let store = small(&mem, Mode::Encrypted);
    let data_key = DataKey::generate().unwrap();
    let k = AttachmentKey::new(&data_key, "pièce jointe");
    let dir = tempfile::tempdir().unwrap();
    for n in [0usize, 1, 1024, 1025, 7000] {
        let data = pattern(n, 42 + n as u64);
        let path = Path::from(format!("py/{n}"));
        store.put(&path, &k, &data[..]).await.unwrap();
        let mut stored = raw(&mem, &path).await;
        let file = dir.path().join(format!("{n}.kmsf"));
        for tamper in [false, true] {
            if tamper {
                let last = stored.len() - 1;
                stored[last] ^= 1;
            }
            std::fs::write(&file, &stored).unwrap();
            let out = python()
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/data/gen_attachment_kat.py"
                ))
                .args(["--decode", file.to_str().unwrap()])
                .args(["--key", &hex::encode(data_key.expose_secret())])
                .args(["--name", k.name()])
                .output()
                .expect("run python (set KMS_FIELDS_PYTHON to a python with `cryptography`)");
            if tamper {
                assert!(!out.status.success(), "tampered {n} decoded");
            } else {
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_eq!(
                    String::from_utf8(out.stdout).unwrap().trim(),
                    hex::encode(&data)
                );
            }
        }
    }
}

#[tokio::test]
async fn tenant_selection() {
    let bucket: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let stores = TenantStores::<String>::new()
        .with_default(AttachmentStore::plain(bucket.clone()))
        .with("acme", AttachmentStore::new(bucket.clone()));
    let k = key(12, "logo");
    for (tenant, encrypted) in [("acme", true), ("globex", false)] {
        let store = stores.select(tenant).unwrap();
        let path = Path::from(format!("{tenant}/logo"));
        store
            .put_bytes(&path, &k, &b"logo bytes"[..])
            .await
            .unwrap();
        assert_eq!(store.head(&path).await.unwrap().encrypted, encrypted);
        assert_eq!(
            store.get_bytes(&path, &k).await.unwrap(),
            &b"logo bytes"[..]
        );
    }
    let none = TenantStores::<String>::new();
    assert_eq!(none.select("x").unwrap_err().kind(), ErrorKind::Config);
    // a closure selects per record
    let enc = AttachmentStore::new(bucket);
    let by_flag = move |secret: &bool| -> kms_fields::Result<AttachmentStore> {
        Ok(if *secret {
            enc.clone()
        } else {
            enc.to_builder().mode(Mode::Plain).build()?
        })
    };
    assert_eq!(by_flag.select(&true).unwrap().mode(), Mode::Encrypted);
    assert_eq!(by_flag.select(&false).unwrap().mode(), Mode::Plain);
}

#[test]
fn key_debug_is_redacted() {
    let k = key(0xAB, "contract");
    let dbg = format!("{k:?}");
    assert_eq!(
        dbg,
        r#"AttachmentKey { name: "contract", data_key: [REDACTED] }"#
    );
    assert!(!dbg.contains("ab") && !dbg.contains("171"));
}
