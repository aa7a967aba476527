//! Uploads: the sealing pump (from an `AsyncRead` or a byte stream) and the sink that picks one
//! PUT for a small object or a multipart upload for a large one.
//!
//! Memory: one segment of plaintext, at most one part of ciphertext being gathered, and at most
//! `upload_concurrency` parts in flight — independent of the object's size.

use std::sync::Arc;

use bytes::{BufMut, Bytes};
use futures::{Stream, StreamExt};
use object_store::path::Path;
use object_store::{
    Attributes, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, WriteMultipart,
};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::format::{Header, Sealer};
use super::key::AttachmentKey;
use super::store::{StoreConfig, store_error};
use crate::error::{Error, ErrorKind, Result};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a `put` wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOutcome {
    /// Plaintext bytes read from the source.
    pub size: u64,
    /// Bytes stored (header and tags included; equal to `size` in plain mode).
    pub stored_size: u64,
    /// Whether a multipart upload was used.
    pub multipart: bool,
    /// The object's entity tag, if the store returns one.
    pub e_tag: Option<String>,
    /// The object's version, if the store is versioned.
    pub version: Option<String>,
}

enum State {
    Buffering { parts: Vec<Bytes>, len: usize },
    Multipart(WriteMultipart),
}

/// Collects stored bytes; one `put_opts` if the whole object fits in one part, else a multipart
/// upload in `part_size` parts.
pub(crate) struct Upload {
    store: Arc<dyn ObjectStore>,
    path: Path,
    config: StoreConfig,
    attributes: Attributes,
    state: State,
    stored: u64,
}

impl Upload {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        path: &Path,
        config: StoreConfig,
        attributes: Attributes,
    ) -> Self {
        Self {
            store,
            path: path.clone(),
            config,
            attributes,
            state: State::Buffering {
                parts: Vec::new(),
                len: 0,
            },
            stored: 0,
        }
    }

    pub async fn push(&mut self, bytes: Bytes) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.stored += bytes.len() as u64;
        match &mut self.state {
            State::Buffering { parts, len } => {
                *len += bytes.len();
                parts.push(bytes);
                if *len >= self.config.part_size {
                    let parts = std::mem::take(parts);
                    let upload = self.start_multipart().await?;
                    let mut writer =
                        WriteMultipart::new_with_chunk_size(upload, self.config.part_size);
                    for p in parts {
                        writer.put(p);
                    }
                    self.state = State::Multipart(writer);
                }
            }
            State::Multipart(writer) => {
                writer
                    .wait_for_capacity(self.config.upload_concurrency)
                    .await
                    .map_err(|e| store_error(e, "upload a part of", &self.path))?;
                writer.put(bytes);
            }
        }
        Ok(())
    }

    async fn start_multipart(&self) -> Result<Box<dyn object_store::MultipartUpload>> {
        let opts = PutMultipartOptions {
            attributes: self.attributes.clone(),
            ..Default::default()
        };
        match self.store.put_multipart_opts(&self.path, opts).await {
            Err(object_store::Error::NotImplemented { .. }) if !self.attributes.is_empty() => {
                // A store without attribute support (LocalFileSystem): metadata is informational.
                self.store
                    .put_multipart_opts(&self.path, PutMultipartOptions::default())
                    .await
            }
            other => other,
        }
        .map_err(|e| store_error(e, "start a multipart upload to", &self.path))
    }

    /// Complete the upload; returns (stored bytes, whether multipart, the store's result).
    pub async fn finish(self) -> Result<(u64, bool, PutResult)> {
        match self.state {
            State::Buffering { parts, .. } => {
                let payload: PutPayload = parts.into_iter().collect();
                let opts = PutOptions {
                    attributes: self.attributes.clone(),
                    ..Default::default()
                };
                let result = match self.store.put_opts(&self.path, payload.clone(), opts).await {
                    Err(object_store::Error::NotImplemented { .. })
                        if !self.attributes.is_empty() =>
                    {
                        self.store
                            .put_opts(&self.path, payload, PutOptions::default())
                            .await
                    }
                    other => other,
                }
                .map_err(|e| store_error(e, "put", &self.path))?;
                Ok((self.stored, false, result))
            }
            State::Multipart(writer) => {
                let result = writer
                    .finish()
                    .await
                    .map_err(|e| store_error(e, "complete the multipart upload of", &self.path))?;
                Ok((self.stored, true, result))
            }
        }
    }

    /// Give up: abort a multipart upload (best effort), so no partial object is ever visible.
    pub async fn abort(self) {
        if let State::Multipart(writer) = self.state {
            let _ = writer.abort().await;
        }
    }
}

/// The plaintext source of a `put`.
pub(crate) enum Source<'a, R: ?Sized, S: ?Sized> {
    Reader(&'a mut R),
    Stream(&'a mut S),
}

/// Seal (or copy, in plain mode) everything from `source` into `upload`.
async fn pump<R, S, E>(
    source: Source<'_, R, S>,
    sealer: Option<&mut Sealer>,
    upload: &mut Upload,
    chunk: usize,
) -> Result<u64>
where
    R: AsyncRead + Unpin + ?Sized,
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + ?Sized,
    E: Into<BoxError>,
{
    match (source, sealer) {
        (Source::Reader(reader), Some(sealer)) => {
            let size = sealer.segment_size();
            loop {
                if sealer.is_full() {
                    // Look ahead: is there more after this full segment?
                    let mut next = sealer.fresh_buffer();
                    let n = reader
                        .read_buf(&mut (&mut next).limit(size))
                        .await
                        .map_err(read_error)?;
                    if n == 0 {
                        break;
                    }
                    let sealed = sealer.seal_full(next)?;
                    upload.push(sealed).await?;
                } else {
                    let buf = sealer.buffer();
                    let room = size - buf.len();
                    let n = reader
                        .read_buf(&mut buf.limit(room))
                        .await
                        .map_err(read_error)?;
                    if n == 0 {
                        break;
                    }
                }
            }
            Ok(0)
        }
        (Source::Stream(stream), Some(sealer)) => {
            let mut out = Vec::new();
            while let Some(item) = stream.next().await {
                let bytes = item.map_err(source_error)?;
                sealer.update(&bytes, &mut out)?;
                for s in out.drain(..) {
                    upload.push(s).await?;
                }
            }
            Ok(0)
        }
        (Source::Reader(reader), None) => {
            let mut total = 0u64;
            loop {
                let mut buf = Vec::with_capacity(chunk);
                let n = reader.read_buf(&mut buf).await.map_err(read_error)?;
                if n == 0 {
                    return Ok(total);
                }
                total += n as u64;
                upload.push(Bytes::from(buf)).await?;
            }
        }
        (Source::Stream(stream), None) => {
            let mut total = 0u64;
            while let Some(item) = stream.next().await {
                let bytes = item.map_err(source_error)?;
                total += bytes.len() as u64;
                upload.push(bytes).await?;
            }
            Ok(total)
        }
    }
}

/// A whole `put`: header, segments, final segment, completion; aborts on any error.
pub(crate) async fn put<R, S, E>(
    store: Arc<dyn ObjectStore>,
    config: StoreConfig,
    attributes: Attributes,
    path: &Path,
    key: &AttachmentKey,
    source: Source<'_, R, S>,
    header: Option<Header>,
) -> Result<PutOutcome>
where
    R: AsyncRead + Unpin + ?Sized,
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + ?Sized,
    E: Into<BoxError>,
{
    let mut upload = Upload::new(store, path, config, attributes);
    let mut sealer = if config.encrypted() {
        let header = match header {
            Some(h) => h,
            None => Header::generate(config.segment_size)?,
        };
        Some(Sealer::new(
            config.backend,
            key.data_key(),
            key.name(),
            header,
        ))
    } else {
        None
    };
    let body = async {
        if let Some(sealer) = &sealer {
            upload.push(sealer.header_bytes()).await?;
        }
        let plain_len = pump(
            source,
            sealer.as_mut(),
            &mut upload,
            config.segment_size as usize,
        )
        .await?;
        let size = match sealer.take() {
            Some(sealer) => {
                let (last, size) = sealer.finish()?;
                upload.push(last).await?;
                size
            }
            None => plain_len,
        };
        Ok::<u64, Error>(size)
    }
    .await;
    let size = match body {
        Ok(size) => size,
        Err(e) => {
            upload.abort().await;
            return Err(e.context(format!("attachment {path}")));
        }
    };
    let (stored_size, multipart, result) = upload.finish().await?;
    Ok(PutOutcome {
        size,
        stored_size,
        multipart,
        e_tag: result.e_tag,
        version: result.version,
    })
}

/// An error of the caller's source; a kms-fields error (a decrypting source in `reencrypt`)
/// keeps its kind.
pub(crate) fn source_error(e: impl Into<BoxError>) -> Error {
    let e: BoxError = e.into();
    match e.downcast::<Error>() {
        Ok(e) => *e,
        Err(e) => match e.downcast::<std::io::Error>() {
            Ok(io) => read_error(*io),
            Err(e) => Error::new(
                ErrorKind::Storage,
                format!("reading the attachment source failed: {e}"),
            )
            .with_source(e),
        },
    }
}

fn read_error(e: std::io::Error) -> Error {
    let msg = format!("reading the attachment source failed: {e}");
    match e.into_inner() {
        Some(inner) => match inner.downcast::<Error>() {
            Ok(e) => *e,
            Err(inner) => Error::new(ErrorKind::Storage, msg).with_source(inner),
        },
        None => Error::new(ErrorKind::Storage, msg),
    }
}
