//! Encrypted attachments (feature `attachments`): files of any size on object storage,
//! encrypted client-side under the record's data key with a streaming AEAD.
//!
//! An attachment is keyed by a record's [`DataKey`](crate::DataKey) and the attachment's
//! logical name ([`AttachmentKey`]). A **re-wrap** rotation of the record's key (new master key,
//! version or context; same data key) therefore needs no change to its files; a **full**
//! data-key rotation re-encrypts them with [`AttachmentStore::reencrypt`], streaming.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kms_fields::Result<()> {
//! use std::sync::Arc;
//! use kms_fields::DataKey;
//! use kms_fields::attachments::{AttachmentKey, AttachmentStore};
//! use object_store::{memory::InMemory, path::Path};
//!
//! // Any object_store backend: AmazonS3, GoogleCloudStorage, MicrosoftAzure, LocalFileSystem…
//! let store = AttachmentStore::new(Arc::new(InMemory::new()));
//! let data_key = DataKey::generate()?; // in an application: the record's unwrapped key
//! let key = AttachmentKey::new(&data_key, "contract");
//! let path = Path::from("users/1/contract.pdf");
//!
//! let file: &[u8] = b"%PDF-1.7 ..."; // any tokio AsyncRead: a File, a request body…
//! let written = store.put(&path, &key, file).await?;
//! assert_eq!((written.size, written.stored_size), (12, 12 + 48 + 16));
//!
//! assert_eq!(store.get_bytes(&path, &key).await?, &b"%PDF-1.7 ..."[..]);
//! assert_eq!(store.get_range(&path, &key, 1..4).await?, &b"PDF"[..]);
//! let meta = store.head(&path).await?;
//! assert!(meta.encrypted && meta.size == 12);
//!
//! // Full data-key rotation: stream the object through, old key → new key.
//! let new_key = AttachmentKey::new(&DataKey::generate()?, "contract");
//! store.reencrypt(&path, &key, &new_key).await?;
//! assert!(store.get_bytes(&path, &key).await.is_err());
//! # Ok(()) }
//! ```
//!
//! # Format (version 1, frozen)
//!
//! Pinned by byte-exact tests (`tests/attachments.rs`, known answers in
//! `tests/data/attachment_kat.json` computed by an independent Python implementation,
//! `tests/data/gen_attachment_kat.py`). The design follows Tink's streaming AEAD and age's
//! STREAM: a random per-object salt, a derived per-object key, and a nonce that encodes the
//! segment's position and whether it is the final one.
//!
//! **Header**, 48 bytes:
//!
//! | bytes | content |
//! | --- | --- |
//! | 0..4 | magic `KMSF` |
//! | 4 | format version, `0x01` |
//! | 5..9 | segment size `S` (plaintext bytes per segment), u32 big-endian, 1 KiB ..= 16 MiB |
//! | 9..41 | salt, 32 random bytes |
//! | 41..48 | nonce prefix, 7 random bytes |
//!
//! **Per-object key**: `HKDF-SHA256(ikm = data key (32 bytes), salt = header salt,
//! info = "kms-fields attachment v1" ‖ 0x00 ‖ logical name (UTF-8))`, 32 bytes. The path is not
//! part of it (copies stay readable); the name is (attachments of one record can't be swapped).
//!
//! **Segments** follow the header, each AES-256-GCM `ciphertext ‖ tag (16)`:
//! - nonce of segment `i` (from 0) = `prefix (7) ‖ i as u32 big-endian (4) ‖ last (1)`, `last`
//!   = `0x01` for the final segment, else `0x00`;
//! - associated data = the full 48-byte header (binds version, segment size, salt and prefix);
//! - every segment but the last holds exactly `S` plaintext bytes; the last holds 1 ..= `S`,
//!   except that an empty attachment is exactly one empty final segment (its tag only);
//! - at most 2^32 segments.
//!
//! So each plaintext length `P` has exactly one encoding, of length
//! `48 + P + 16 × max(1, ceil(P / S))`; a reader derives the segment layout from the stored
//! length and rejects any length the writer cannot produce. Truncation at a segment boundary
//! fails (the new final segment was sealed with `last = 0`), so does dropping, reordering or
//! duplicating a segment (wrong index in the nonce), a segment from another object (another
//! salt, so another key, and another prefix), any flipped bit, and a changed header (it is the
//! associated data of every segment).
//!
//! **Object metadata** (object_store attributes; informational, the header is
//! authoritative): `kms-fields-format` = `1` and `kms-fields-segment-size` = `S`, content type
//! `application/octet-stream`; a plain store writes `kms-fields-format` = `none`. Stores
//! without metadata support (`LocalFileSystem`) get the object without it.
//!
//! # API
//!
//! [`AttachmentStore`] wraps an `Arc<dyn ObjectStore>` and is cheap to clone:
//!
//! | method | what it does |
//! | --- | --- |
//! | [`put`](AttachmentStore::put) / [`put_stream`](AttachmentStore::put_stream) / [`put_bytes`](AttachmentStore::put_bytes) | encrypt from an `AsyncRead` / a `Stream<Item = Result<Bytes, E>>` / memory; one PUT below the part size, else a multipart upload; returns a [`PutOutcome`] (plaintext and stored size) |
//! | [`get`](AttachmentStore::get) | an [`AttachmentStream`] of verified plaintext chunks; [`into_async_read`](AttachmentStream::into_async_read) gives an `AsyncRead` |
//! | [`get_bytes`](AttachmentStore::get_bytes) | the whole plaintext |
//! | [`get_range`](AttachmentStore::get_range) / [`get_range_stream`](AttachmentStore::get_range_stream) | plaintext bytes `start..end`: a 48-byte header read and one ranged read of the covering segments |
//! | [`head`](AttachmentStore::head) | [`AttachmentMeta`]: plaintext and stored size, encrypted or not, version, segment size — without downloading |
//! | [`delete`](AttachmentStore::delete), [`copy`](AttachmentStore::copy) | server-side |
//! | [`reencrypt`](AttachmentStore::reencrypt) / [`reencrypt_to`](AttachmentStore::reencrypt_to) | stream an object from one key (and store) to another |
//!
//! Options ([`AttachmentStore::builder`]): [`Mode`] (encrypted or plain), segment size
//! (default 64 KiB), multipart part size (≥ 5 MiB, default 8 MiB), upload concurrency (default
//! 2), read-only, AES backend (aws-lc-rs when feature `aws-lc` is on, several times faster),
//! metadata on/off.
//!
//! Memory is constant per transfer: about one segment while reading, and one part being
//! gathered plus `upload_concurrency` parts in flight while writing (≈ 24 MiB with the
//! defaults), whatever the object's size. Plaintext chunks handed to the caller are ordinary
//! `Bytes` (not zeroized: they belong to the caller); derived keys are zeroized on drop.
//!
//! # Per-tenant stores
//!
//! There is no global store. An application keeps its stores (one per bucket and mode) and
//! picks one per record or per call — for example plain for most tenants and encrypted for one
//! that requires it — through a [`StoreSelector`]: a closure, a [`TenantStores`] map, or a
//! single store. Plain stores accept the same calls (keys are ignored), so the code that
//! uploads does not change:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> kms_fields::Result<()> {
//! # use std::sync::Arc;
//! # use kms_fields::{DataKey, attachments::*};
//! # use object_store::{memory::InMemory, path::Path};
//! struct Tenant { id: u64, requires_encryption: bool }
//!
//! let bucket = Arc::new(InMemory::new());
//! let encrypted = AttachmentStore::new(bucket.clone());
//! let plain = AttachmentStore::plain(bucket);
//! let select = move |t: &Tenant| -> kms_fields::Result<AttachmentStore> {
//!     Ok(if t.requires_encryption { encrypted.clone() } else { plain.clone() })
//! };
//!
//! let key = AttachmentKey::new(&DataKey::generate()?, "scan");
//! for tenant in [Tenant { id: 1, requires_encryption: true }, Tenant { id: 2, requires_encryption: false }] {
//!     let store = select.select(&tenant)?;
//!     let path = Path::from(format!("tenants/{}/scan.png", tenant.id));
//!     store.put_bytes(&path, &key, &b"\x89PNG"[..]).await?;
//!     assert_eq!(store.head(&path).await?.encrypted, tenant.requires_encryption);
//! }
//! # Ok(()) }
//! ```
//!
//! Switching a tenant from plain to encrypted: new uploads go to the encrypted store at once;
//! existing objects are migrated with `plain.reencrypt_to(path, &key, &encrypted, path, &key)`.
//! (An encrypted store refuses to read a plain object — `BadFormat` — rather than guess.)
//!
//! # Errors
//!
//! Every error is a [`crate::Error`]; match on [`kind`](crate::Error::kind):
//!
//! | kind | when |
//! | --- | --- |
//! | `DecryptionFailed` | wrong data key or logical name, a tampered, truncated, reordered or foreign segment, a stored length that is not an attachment's — as an `Err` item of the stream at the first bad segment (never a clean end) |
//! | `BadFormat` | an encrypted store read an object without the `KMSF` header, or of an unknown version |
//! | `NotFound` | no object at the path |
//! | `InvalidRange` | `get_range` with `start` at or past the size, or `start > end` |
//! | `Config` | invalid options; a write to a read-only store; an operation the store does not support |
//! | `Conflict` | the object changed between the header read and the ranged read of `get_range`, or a precondition failed (retryable) |
//! | `AccessDenied` | the store refused the credentials |
//! | `Storage` | any other store or source-stream failure; [`is_retryable`](crate::Error::is_retryable) for transient ones (HTTP 5xx/408/429, connection errors) |
//!
//! Messages name the path and the operation, never plaintext or key bytes.

pub mod format;
mod key;
mod reader;
pub mod record;
mod store;
mod tenant;
mod writer;

pub use key::AttachmentKey;
pub use reader::{AttachmentReader, AttachmentStream};
pub use store::{
    AttachmentMeta, AttachmentStore, AttachmentStoreBuilder, DEFAULT_PART_SIZE,
    DEFAULT_UPLOAD_CONCURRENCY, META_FORMAT, META_SEGMENT_SIZE, MIN_PART_SIZE, Mode,
};
pub use tenant::{StoreSelector, TenantStores};
pub use writer::PutOutcome;

/// The `object_store` crate this module is built on (for its `Path`, stores and options).
pub use object_store;
