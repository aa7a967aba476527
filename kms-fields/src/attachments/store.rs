//! [`AttachmentStore`]: encrypted (or plain) attachments on any `object_store` backend.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, CopyOptions, GetOptions, GetRange, ObjectStore,
    ObjectStoreExt,
};
use tokio::io::AsyncRead;

use super::format::{self, DEFAULT_SEGMENT_SIZE, FORMAT_VERSION, Framing, HEADER_LEN, Header};
use super::key::AttachmentKey;
use super::reader::AttachmentStream;
use super::writer::{self, PutOutcome, Source};
use crate::cipher::Backend;
use crate::error::{Error, ErrorKind, Result};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Metadata key naming the format: `"1"` (encrypted, version 1) or `"none"` (plain).
pub const META_FORMAT: &str = "kms-fields-format";
/// Metadata key holding the segment size of an encrypted object.
pub const META_SEGMENT_SIZE: &str = "kms-fields-segment-size";
/// Smallest multipart part size (S3's minimum for every part but the last): 5 MiB.
pub const MIN_PART_SIZE: usize = 5 << 20;
/// Default multipart part size: 8 MiB.
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// Default number of parts uploaded concurrently.
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 2;

/// Whether a store encrypts what it writes and decrypts what it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The kms-fields attachment format (the default).
    Encrypted,
    /// Objects are stored as given (a tenant that does not require encryption). Keys are
    /// accepted and ignored, so code can switch stores without changing its calls.
    Plain,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct StoreConfig {
    pub mode: Mode,
    pub segment_size: u32,
    pub part_size: usize,
    pub upload_concurrency: usize,
    pub read_only: bool,
    pub backend: Backend,
    pub metadata: bool,
}

impl StoreConfig {
    pub fn encrypted(&self) -> bool {
        self.mode == Mode::Encrypted
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Encrypted,
            segment_size: DEFAULT_SEGMENT_SIZE,
            part_size: DEFAULT_PART_SIZE,
            upload_concurrency: DEFAULT_UPLOAD_CONCURRENCY,
            read_only: false,
            backend: Backend::default(),
            metadata: true,
        }
    }
}

/// Encrypted attachments on an [`ObjectStore`] (S3, GCS, Azure, local files, memory).
///
/// Cheap to clone (an `Arc` and a few integers); pick one per call or per record — see the
/// [module docs](super#per-tenant-stores). Every method takes the object's [`Path`] and, where
/// it reads or writes content, the [`AttachmentKey`].
#[derive(Clone)]
pub struct AttachmentStore {
    store: Arc<dyn ObjectStore>,
    config: StoreConfig,
}

/// Builds an [`AttachmentStore`]; see [`AttachmentStore::builder`].
#[derive(Clone, Debug)]
pub struct AttachmentStoreBuilder {
    store: Arc<dyn ObjectStore>,
    config: StoreConfig,
}

impl AttachmentStoreBuilder {
    /// Encrypted (default) or plain.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.config.mode = mode;
        self
    }

    /// Plaintext bytes per segment for new objects: 1 KiB ..= 16 MiB, default 64 KiB. Readers
    /// take the size from each object's header, so it can change at any time.
    pub fn segment_size(mut self, bytes: u32) -> Self {
        self.config.segment_size = bytes;
        self
    }

    /// Multipart part size (≥ 5 MiB, default 8 MiB). Objects smaller than one part are written
    /// with one PUT.
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.config.part_size = bytes;
        self
    }

    /// Parts uploaded at once (≥ 1, default 2). Memory per upload is about
    /// `(concurrency + 1) × part size`.
    pub fn upload_concurrency(mut self, parts: usize) -> Self {
        self.config.upload_concurrency = parts;
        self
    }

    /// Refuse every write (`put`, `copy`, `delete`, `reencrypt`) with a `Config` error.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.config.read_only = read_only;
        self
    }

    /// The AES-256-GCM implementation (default: aws-lc-rs with feature `aws-lc`).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.config.backend = backend;
        self
    }

    /// Write the informational object metadata (`kms-fields-format`, …; default on). Stores
    /// that cannot hold metadata (the local file system) are written without it either way.
    pub fn write_metadata(mut self, on: bool) -> Self {
        self.config.metadata = on;
        self
    }

    /// Check the options. `Config` error for a segment size outside 1 KiB ..= 16 MiB, a part
    /// size under 5 MiB or a concurrency of 0.
    pub fn build(self) -> Result<AttachmentStore> {
        format::check_segment_size(self.config.segment_size)?;
        if self.config.part_size < MIN_PART_SIZE {
            return Err(Error::config(format!(
                "attachment part size must be at least {MIN_PART_SIZE} bytes (5 MiB), got {}",
                self.config.part_size
            )));
        }
        if self.config.upload_concurrency == 0 {
            return Err(Error::config(
                "attachment upload concurrency must be at least 1",
            ));
        }
        Ok(AttachmentStore {
            store: self.store,
            config: self.config,
        })
    }
}

/// What [`AttachmentStore::head`] reports, from the object's first 48 bytes and its size.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttachmentMeta {
    /// Plaintext size in bytes.
    pub size: u64,
    /// Stored size in bytes.
    pub stored_size: u64,
    /// Whether the object is a kms-fields encrypted attachment (it starts with a valid header).
    pub encrypted: bool,
    /// The format version of an encrypted object.
    pub format_version: Option<u8>,
    /// The segment size of an encrypted object.
    pub segment_size: Option<u32>,
    /// The object's entity tag, if the store has one.
    pub e_tag: Option<String>,
    /// The `kms-fields-format` metadata, if the store keeps metadata (informational only).
    pub format_metadata: Option<String>,
}

impl AttachmentStore {
    /// An encrypted store with the default options (64 KiB segments, 8 MiB parts).
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            config: StoreConfig::default(),
        }
    }

    /// A plain store with the default options: objects are written and read unencrypted.
    pub fn plain(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            config: StoreConfig {
                mode: Mode::Plain,
                ..StoreConfig::default()
            },
        }
    }

    /// A builder for the other options.
    pub fn builder(store: Arc<dyn ObjectStore>) -> AttachmentStoreBuilder {
        AttachmentStoreBuilder {
            store,
            config: StoreConfig::default(),
        }
    }

    /// A builder starting from this store's options (to derive a variant of it).
    pub fn to_builder(&self) -> AttachmentStoreBuilder {
        AttachmentStoreBuilder {
            store: self.store.clone(),
            config: self.config,
        }
    }

    /// The same store, refusing writes.
    pub fn read_only(&self) -> Self {
        let mut s = self.clone();
        s.config.read_only = true;
        s
    }

    /// Encrypted or plain.
    pub fn mode(&self) -> Mode {
        self.config.mode
    }

    /// Whether writes are refused.
    pub fn is_read_only(&self) -> bool {
        self.config.read_only
    }

    /// Segment size used for new objects.
    pub fn segment_size(&self) -> u32 {
        self.config.segment_size
    }

    /// Multipart part size.
    pub fn part_size(&self) -> usize {
        self.config.part_size
    }

    /// The underlying object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn writable(&self, op: &str, path: &Path) -> Result<()> {
        if self.config.read_only {
            return Err(Error::config(format!(
                "attachment store is read-only: refusing to {op} `{path}`"
            )));
        }
        Ok(())
    }

    fn attributes(&self) -> Attributes {
        let mut a = Attributes::new();
        if !self.config.metadata {
            return a;
        }
        let meta = |k: &'static str| Attribute::Metadata(k.into());
        match self.config.mode {
            Mode::Encrypted => {
                a.insert(
                    meta(META_FORMAT),
                    AttributeValue::from(FORMAT_VERSION.to_string()),
                );
                a.insert(
                    meta(META_SEGMENT_SIZE),
                    AttributeValue::from(self.config.segment_size.to_string()),
                );
                a.insert(
                    Attribute::ContentType,
                    AttributeValue::from("application/octet-stream"),
                );
            }
            Mode::Plain => {
                a.insert(meta(META_FORMAT), AttributeValue::from("none"));
            }
        }
        a
    }

    /// Write an attachment from any [`AsyncRead`], streaming: constant memory whatever its size,
    /// one PUT below the part size, a multipart upload above it (aborted on error, so a failed
    /// put never leaves a partial object). Replaces an existing object atomically.
    pub async fn put<R>(
        &self,
        path: &Path,
        key: &AttachmentKey,
        mut reader: R,
    ) -> Result<PutOutcome>
    where
        R: AsyncRead + Unpin,
    {
        self.writable("put", path)?;
        writer::put::<R, futures::stream::Empty<Result<Bytes>>, Error>(
            self.store.clone(),
            self.config,
            self.attributes(),
            path,
            key,
            Source::Reader(&mut reader),
            None,
        )
        .await
    }

    /// [`put`](Self::put) with a caller-chosen header (salt, nonce prefix, segment size). Only
    /// for known-answer tests: a salt must never repeat under one key.
    #[doc(hidden)]
    pub async fn put_with_header<R>(
        &self,
        path: &Path,
        key: &AttachmentKey,
        header: Header,
        mut reader: R,
    ) -> Result<PutOutcome>
    where
        R: AsyncRead + Unpin,
    {
        self.writable("put", path)?;
        writer::put::<R, futures::stream::Empty<Result<Bytes>>, Error>(
            self.store.clone(),
            self.config,
            self.attributes(),
            path,
            key,
            Source::Reader(&mut reader),
            Some(header),
        )
        .await
    }

    /// Write an attachment from a stream of byte chunks (as [`put`](Self::put)). An error item
    /// aborts the upload and is returned (a kms-fields error keeps its kind).
    pub async fn put_stream<S, E>(
        &self,
        path: &Path,
        key: &AttachmentKey,
        mut stream: S,
    ) -> Result<PutOutcome>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: Into<BoxError>,
    {
        self.writable("put", path)?;
        writer::put::<tokio::io::Empty, S, E>(
            self.store.clone(),
            self.config,
            self.attributes(),
            path,
            key,
            Source::Stream(&mut stream),
            None,
        )
        .await
    }

    /// Write a small attachment held in memory.
    pub async fn put_bytes(
        &self,
        path: &Path,
        key: &AttachmentKey,
        bytes: impl Into<Bytes>,
    ) -> Result<PutOutcome> {
        let bytes = bytes.into();
        self.put_stream(path, key, futures::stream::iter([Ok::<_, Error>(bytes)]))
            .await
    }

    /// Read an attachment as a stream of plaintext chunks, each verified before it is yielded
    /// (see [`AttachmentStream`]). Errors before the stream: `NotFound`, `BadFormat` (not an
    /// encrypted attachment, unknown version), `DecryptionFailed` (a stored length that cannot
    /// be an attachment: truncated or extended).
    pub async fn get(&self, path: &Path, key: &AttachmentKey) -> Result<AttachmentStream> {
        let result = self
            .store
            .get_opts(path, GetOptions::default())
            .await
            .map_err(|e| store_error(e, "get", path))?;
        let stored_size = result.meta.size;
        let mut stream = result.into_stream();
        if !self.config.encrypted() {
            return Ok(AttachmentStream::new(
                stream,
                None,
                path.clone(),
                Bytes::new(),
                0,
                stored_size,
            ));
        }
        let mut head = Vec::with_capacity(HEADER_LEN);
        let mut leftover = Bytes::new();
        while head.len() < HEADER_LEN {
            match stream.next().await {
                Some(Ok(mut chunk)) => {
                    let take = chunk.len().min(HEADER_LEN - head.len());
                    head.extend_from_slice(&chunk.split_to(take));
                    leftover = chunk;
                }
                Some(Err(e)) => return Err(store_error(e, "get", path)),
                None => break,
            }
        }
        let at = || format!("attachment {path}");
        let header = Header::parse(&head).map_err(|e| e.context(at()))?;
        let layout =
            format::layout(stored_size, header.segment_size()).map_err(|e| e.context(at()))?;
        let opener = format::Opener::new(
            self.config.backend,
            key.data_key(),
            key.name(),
            header,
            0,
            Framing::ToEnd,
        );
        Ok(AttachmentStream::new(
            stream,
            Some(opener),
            path.clone(),
            leftover,
            0,
            layout.plaintext_len,
        ))
    }

    /// Read a whole attachment into memory (for small objects).
    pub async fn get_bytes(&self, path: &Path, key: &AttachmentKey) -> Result<Bytes> {
        self.get(path, key).await?.bytes().await
    }

    /// Read plaintext bytes `range` as a stream: one read of the header, one ranged read of
    /// the segments that cover the range; only those are decrypted. `end` past the size is
    /// clamped; `start` at or past the size (for a non-empty range), `start` past the size, or
    /// `start > end` is an [`InvalidRange`](ErrorKind::InvalidRange) error; an empty range
    /// `start..start` with `start <= size` yields nothing.
    pub async fn get_range_stream(
        &self,
        path: &Path,
        key: &AttachmentKey,
        range: Range<u64>,
    ) -> Result<AttachmentStream> {
        if range.start > range.end {
            return Err(invalid_range(&range, None, path));
        }
        if !self.config.encrypted() {
            return self.plain_range(path, range).await;
        }
        let first = self.read_header(path).await?;
        let (header, stored_size) = match first.header {
            Ok(h) => (h, first.stored_size),
            Err(e) => return Err(e.context(format!("attachment {path}"))),
        };
        let layout = format::layout(stored_size, header.segment_size())
            .map_err(|e| e.context(format!("attachment {path}")))?;
        let size = layout.plaintext_len;
        let end = range.end.min(size);
        if range.start == range.end && range.start <= size {
            return Ok(AttachmentStream::empty(path.clone()));
        }
        if range.start >= end {
            return Err(invalid_range(&range, Some(size), path));
        }
        let s = layout.segment_size;
        let (first_seg, last_seg) = (range.start / s, (end - 1) / s);
        let stored = layout.offset(first_seg)..layout.end(last_seg);
        let opts = GetOptions {
            range: Some(GetRange::Bounded(stored.clone())),
            // Fail rather than mix two versions of the object if it is replaced meanwhile.
            if_match: first.e_tag,
            ..Default::default()
        };
        let result = self
            .store
            .get_opts(path, opts)
            .await
            .map_err(|e| store_error(e, "get a range of", path))?;
        if result.range != stored || result.meta.size != stored_size {
            return Err(Error::new(
                ErrorKind::Storage,
                format!(
                    "attachment {path}: the store returned bytes {:?} of {}, not {stored:?} of {stored_size}",
                    result.range, result.meta.size
                ),
            ));
        }
        let opener = format::Opener::new(
            self.config.backend,
            key.data_key(),
            key.name(),
            header,
            first_seg,
            Framing::Range {
                stop: last_seg,
                layout,
            },
        );
        Ok(AttachmentStream::new(
            result.into_stream(),
            Some(opener),
            path.clone(),
            Bytes::new(),
            (range.start - first_seg * s) as usize,
            end - range.start,
        ))
    }

    /// [`get_range_stream`](Self::get_range_stream) collected into one buffer.
    pub async fn get_range(
        &self,
        path: &Path,
        key: &AttachmentKey,
        range: Range<u64>,
    ) -> Result<Bytes> {
        self.get_range_stream(path, key, range).await?.bytes().await
    }

    async fn plain_range(&self, path: &Path, range: Range<u64>) -> Result<AttachmentStream> {
        let size_of = || async {
            self.store
                .head(path)
                .await
                .map(|m| m.size)
                .map_err(|e| store_error(e, "head", path))
        };
        if range.start == range.end {
            let size = size_of().await?;
            if range.start > size {
                return Err(invalid_range(&range, Some(size), path));
            }
            return Ok(AttachmentStream::empty(path.clone()));
        }
        let opts = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..Default::default()
        };
        match self.store.get_opts(path, opts).await {
            Ok(r) => {
                let len = r.range.end - r.range.start;
                Ok(AttachmentStream::new(
                    r.into_stream(),
                    None,
                    path.clone(),
                    Bytes::new(),
                    0,
                    len,
                ))
            }
            Err(e @ object_store::Error::NotFound { .. }) => Err(store_error(e, "get", path)),
            Err(e) => match size_of().await {
                Ok(size) if range.start >= size => Err(invalid_range(&range, Some(size), path)),
                _ => Err(store_error(e, "get a range of", path)),
            },
        }
    }

    /// One ranged read of the first 48 bytes; it gives the stored size too.
    async fn read_header(&self, path: &Path) -> Result<FirstBytes> {
        let opts = GetOptions {
            range: Some(GetRange::Bounded(0..HEADER_LEN as u64)),
            ..Default::default()
        };
        match self.store.get_opts(path, opts).await {
            Ok(r) => {
                let stored_size = r.meta.size;
                let e_tag = r.meta.e_tag.clone();
                let format_metadata = r
                    .attributes
                    .get(&Attribute::Metadata(META_FORMAT.into()))
                    .map(|v| v.as_ref().to_owned());
                let bytes = r.bytes().await.map_err(|e| store_error(e, "head", path))?;
                Ok(FirstBytes {
                    header: Header::parse(&bytes),
                    starts_with_magic: bytes.starts_with(&format::MAGIC),
                    stored_size,
                    e_tag,
                    format_metadata,
                })
            }
            Err(e @ object_store::Error::NotFound { .. }) => Err(store_error(e, "head", path)),
            // An empty object has no byte 0: ranged reads of it fail on most stores.
            Err(e) => match self.store.head(path).await {
                Ok(meta) if meta.size == 0 => Ok(FirstBytes {
                    header: Header::parse(&[]),
                    starts_with_magic: false,
                    stored_size: 0,
                    e_tag: meta.e_tag,
                    format_metadata: None,
                }),
                _ => Err(store_error(e, "head", path)),
            },
        }
    }

    /// Sizes and format of an object without downloading it (one ranged read of 48 bytes).
    /// An object that does not start with `KMSF` is reported as not encrypted (its plaintext
    /// size is its stored size), whatever this store's mode; an encrypted object whose length
    /// cannot be an attachment is a `DecryptionFailed` error, an unknown version `BadFormat`.
    pub async fn head(&self, path: &Path) -> Result<AttachmentMeta> {
        let first = self.read_header(path).await?;
        let at = || format!("attachment {path}");
        match first.header {
            Ok(header) => {
                let layout = format::layout(first.stored_size, header.segment_size())
                    .map_err(|e| e.context(at()))?;
                Ok(AttachmentMeta {
                    size: layout.plaintext_len,
                    stored_size: first.stored_size,
                    encrypted: true,
                    format_version: Some(header.version()),
                    segment_size: Some(header.segment_size()),
                    e_tag: first.e_tag,
                    format_metadata: first.format_metadata,
                })
            }
            Err(e) if first.starts_with_magic => Err(e.context(at())),
            Err(_) => Ok(AttachmentMeta {
                size: first.stored_size,
                stored_size: first.stored_size,
                encrypted: false,
                format_version: None,
                segment_size: None,
                e_tag: first.e_tag,
                format_metadata: first.format_metadata,
            }),
        }
    }

    /// Delete an object. Deleting a missing object succeeds (as on S3), on every store.
    pub async fn delete(&self, path: &Path) -> Result<()> {
        self.writable("delete", path)?;
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(e, "delete", path)),
        }
    }

    /// Server-side copy, overwriting `to`. The key depends on the data key and the logical
    /// name, not on the path, so the copy reads with the same [`AttachmentKey`].
    pub async fn copy(&self, from: &Path, to: &Path) -> Result<()> {
        self.writable("copy to", to)?;
        self.store
            .copy_opts(from, to, CopyOptions::default())
            .await
            .map_err(|e| store_error(e, "copy", from))
    }

    /// Re-encrypt an attachment in place under a new key (a full data-key rotation), streaming
    /// with constant memory. The new object replaces the old one only after every old segment
    /// verified; on any error the old object is left as it was. See
    /// [`reencrypt_to`](Self::reencrypt_to).
    pub async fn reencrypt(
        &self,
        path: &Path,
        old: &AttachmentKey,
        new: &AttachmentKey,
    ) -> Result<PutOutcome> {
        self.reencrypt_to(path, old, self, path, new).await
    }

    /// Read `from` with `old` from this store and write it to `to` with `new` through `dest`
    /// (which may be another store or mode: this also migrates a plain tenant to encryption,
    /// or changes the segment size). Refused with a `Config` error if `dest` is read-only.
    pub async fn reencrypt_to(
        &self,
        from: &Path,
        old: &AttachmentKey,
        dest: &AttachmentStore,
        to: &Path,
        new: &AttachmentKey,
    ) -> Result<PutOutcome> {
        dest.writable("re-encrypt", to)?;
        let stream = self.get(from, old).await?;
        dest.put_stream(to, new, stream).await
    }
}

struct FirstBytes {
    header: Result<Header>,
    starts_with_magic: bool,
    stored_size: u64,
    e_tag: Option<String>,
    format_metadata: Option<String>,
}

impl fmt::Debug for AttachmentStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentStore")
            .field("store", &format_args!("{}", self.store))
            .field("mode", &self.config.mode)
            .field("segment_size", &self.config.segment_size)
            .field("part_size", &self.config.part_size)
            .field("read_only", &self.config.read_only)
            .finish_non_exhaustive()
    }
}

fn invalid_range(range: &Range<u64>, size: Option<u64>, path: &Path) -> Error {
    let msg = match size {
        Some(size) => format!(
            "attachment {path}: range {}..{} is outside the attachment ({size} bytes)",
            range.start, range.end
        ),
        None => format!(
            "attachment {path}: invalid range {}..{} (start after end)",
            range.start, range.end
        ),
    };
    Error::new(ErrorKind::InvalidRange, msg)
}

/// Map an `object_store` error to a kms-fields error of a matchable kind.
///
/// `NotFound` → `NotFound`; `AlreadyExists`, `Precondition` → `Conflict` (retryable: the object
/// changed underneath); `PermissionDenied`, `Unauthenticated` → `AccessDenied`; unsupported or
/// invalid calls and paths → `Config`; the rest → `Storage`, retryable when transient (an HTTP
/// store's 5xx, 408, 429, or a connection/timeout error — object_store has already retried
/// those per its `RetryConfig`).
pub(crate) fn store_error(e: object_store::Error, op: &str, path: &Path) -> Error {
    use object_store::Error as E;
    let (kind, retryable) = match &e {
        E::NotFound { .. } => (ErrorKind::NotFound, false),
        E::AlreadyExists { .. } | E::Precondition { .. } => (ErrorKind::Conflict, true),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => (ErrorKind::AccessDenied, false),
        E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::InvalidPath { .. }
        | E::UnknownConfigurationKey { .. } => (ErrorKind::Config, false),
        E::Generic { store, source } => (ErrorKind::Storage, transient(store, source.as_ref())),
        _ => (ErrorKind::Storage, false),
    };
    let message = match kind {
        ErrorKind::NotFound => format!("attachment not found: {path}"),
        _ => format!("attachment store: {op} `{path}` failed: {e}"),
    };
    Error::new(kind, message)
        .retryable(retryable)
        .with_source(e)
}

fn transient(store: &str, source: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(source);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            if matches!(
                io.kind(),
                K::TimedOut
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::ConnectionRefused
                    | K::BrokenPipe
                    | K::Interrupted
                    | K::UnexpectedEof
            ) {
                return true;
            }
        }
        let text = err.to_string();
        if let Some(at) = text.find("status code: ") {
            let code: String = text[at + 13..].chars().take(3).collect();
            if let Ok(code) = code.parse::<u16>() {
                return code >= 500 || code == 408 || code == 429;
            }
        }
        cur = err.source();
    }
    // No HTTP status: a network-level failure of a remote store (retryable), or a local one.
    !matches!(store, "LocalFileSystem" | "InMemory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_mapping() {
        let p = Path::from("a/b");
        let nf = object_store::Error::NotFound {
            path: "a/b".into(),
            source: "gone".into(),
        };
        let e = store_error(nf, "get", &p);
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.to_string(), "attachment not found: a/b");
        let g = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 503 Service Unavailable: slow down"
                .into(),
        };
        let e = store_error(g, "get", &p);
        assert_eq!(e.kind(), ErrorKind::Storage);
        assert!(e.is_retryable());
        let g = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 400 Bad Request: no".into(),
        };
        assert!(!store_error(g, "get", &p).is_retryable());
        let g = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: "disk full".into(),
        };
        assert!(!store_error(g, "put", &p).is_retryable());
        let d = object_store::Error::PermissionDenied {
            path: "a/b".into(),
            source: "no".into(),
        };
        assert_eq!(store_error(d, "put", &p).kind(), ErrorKind::AccessDenied);
    }

    #[test]
    fn builder_validates() {
        let mem: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let kind = |b: AttachmentStoreBuilder| b.build().unwrap_err().kind();
        assert_eq!(
            kind(AttachmentStore::builder(mem.clone()).segment_size(512)),
            ErrorKind::Config
        );
        assert_eq!(
            kind(AttachmentStore::builder(mem.clone()).segment_size((16 << 20) + 1)),
            ErrorKind::Config
        );
        assert_eq!(
            kind(AttachmentStore::builder(mem.clone()).part_size(1 << 20)),
            ErrorKind::Config
        );
        assert_eq!(
            kind(AttachmentStore::builder(mem.clone()).upload_concurrency(0)),
            ErrorKind::Config
        );
        let s = AttachmentStore::builder(mem)
            .segment_size(1024)
            .build()
            .unwrap();
        assert_eq!(s.segment_size(), 1024);
        assert!(!s.is_read_only() && s.read_only().is_read_only());
    }
}
