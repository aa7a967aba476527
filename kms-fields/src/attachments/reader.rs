//! Downloads: the decrypting stream and its `AsyncRead` adapter.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use object_store::path::Path;
use tokio::io::{AsyncRead, ReadBuf};

use super::format::Opener;
use super::store::store_error;
use crate::error::{Error, ErrorKind, Result};

/// The plaintext of an attachment (or of a range of it), as a stream of [`Bytes`].
///
/// In encrypted mode every item is a segment (or the covered part of one) whose tag has
/// verified. Tampering, truncation, reordering or a segment from another object shows up as an
/// `Err` item of kind [`DecryptionFailed`](ErrorKind::DecryptionFailed), after which the stream
/// ends: a stream that ends without an error delivered the complete, authentic plaintext.
/// A consumer that must not act on partial data (a re-encryption, a virus scan) should act only
/// after the stream ended cleanly.
pub struct AttachmentStream {
    inner: BoxStream<'static, object_store::Result<Bytes>>,
    opener: Option<Opener>,
    path: Path,
    pending: Option<Bytes>,
    ready: VecDeque<Bytes>,
    error: Option<Error>,
    skip: usize,
    remaining: u64,
    size: u64,
    finished: bool,
}

impl AttachmentStream {
    /// `inner` yields stored bytes; `leftover` are stored bytes already read (after the header).
    /// `skip` plaintext bytes are dropped from the front and `size` bytes are delivered.
    pub(crate) fn new(
        inner: BoxStream<'static, object_store::Result<Bytes>>,
        opener: Option<Opener>,
        path: Path,
        leftover: Bytes,
        skip: usize,
        size: u64,
    ) -> Self {
        Self {
            inner,
            opener,
            path,
            pending: (!leftover.is_empty()).then_some(leftover),
            ready: VecDeque::new(),
            error: None,
            skip,
            remaining: size,
            size,
            finished: false,
        }
    }

    pub(crate) fn empty(path: Path) -> Self {
        Self::new(
            futures::stream::empty().boxed(),
            None,
            path,
            Bytes::new(),
            0,
            0,
        )
    }

    /// Plaintext bytes this stream delivers when it completes (from the stored size; the
    /// content is authenticated as it is read).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the object is decrypted (an encrypted store) or passed through (a plain one).
    pub fn is_encrypted(&self) -> bool {
        self.opener.is_some()
    }

    /// The stream as a [`tokio::io::AsyncRead`]. Errors become `io::Error`s of kind
    /// `InvalidData` (decryption failed, bad format), `NotFound`, or `Other`, wrapping the
    /// kms-fields [`Error`].
    pub fn into_async_read(self) -> AttachmentReader {
        AttachmentReader {
            stream: self,
            chunk: Bytes::new(),
        }
    }

    /// Collect the whole plaintext into one buffer.
    pub async fn bytes(mut self) -> Result<Bytes> {
        let mut out = Vec::with_capacity(usize::try_from(self.size).unwrap_or(0).min(1 << 30));
        while let Some(chunk) = self.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(Bytes::from(out))
    }

    /// Trim a plaintext chunk to the requested range.
    fn trim(&mut self, mut chunk: Bytes) -> Bytes {
        if self.skip > 0 {
            let n = self.skip.min(chunk.len());
            chunk.advance(n);
            self.skip -= n;
        }
        if (chunk.len() as u64) > self.remaining {
            chunk.truncate(self.remaining as usize);
        }
        self.remaining -= chunk.len() as u64;
        chunk
    }

    fn feed(&mut self, chunk: &[u8]) {
        match &mut self.opener {
            Some(opener) => {
                if let Err(e) = opener.update(chunk, &mut self.ready) {
                    self.fail(e);
                }
            }
            None => self.ready.push_back(Bytes::copy_from_slice(chunk)),
        }
    }

    fn fail(&mut self, e: Error) {
        self.error = Some(e.context(format!("attachment {}", self.path)));
        self.finished = true;
    }
}

impl Stream for AttachmentStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            // Segments that verified before an error are still delivered, in order.
            if let Some(chunk) = this.ready.pop_front() {
                let chunk = this.trim(chunk);
                if chunk.is_empty() {
                    continue;
                }
                return Poll::Ready(Some(Ok(chunk)));
            }
            if let Some(e) = this.error.take() {
                return Poll::Ready(Some(Err(e)));
            }
            if this.finished {
                return Poll::Ready(None);
            }
            ready!(this.poll_fill(cx));
        }
    }
}

impl AttachmentStream {
    /// Read stored bytes until a verified chunk is ready, an error is recorded, or the object
    /// ended.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if !self.ready.is_empty() || self.error.is_some() || self.finished {
                return Poll::Ready(());
            }
            if let Some(leftover) = self.pending.take() {
                self.feed(&leftover);
                continue;
            }
            match ready!(self.inner.poll_next_unpin(cx)) {
                Some(Ok(chunk)) if self.opener.is_none() => {
                    // Plain mode: pass stored bytes through without a copy.
                    self.ready.push_back(chunk);
                }
                Some(Ok(chunk)) => self.feed(&chunk),
                Some(Err(e)) => {
                    let e = store_error(e, "read", &self.path);
                    self.fail(e);
                }
                None => {
                    self.finished = true;
                    if let Some(opener) = &mut self.opener {
                        match opener.finish() {
                            Ok(last) => self.ready.extend(last),
                            Err(e) => self.fail(e),
                        }
                    }
                }
            }
        }
    }

    /// Verify the first segment before handing the stream out: a wrong key (or a tampered first
    /// segment) is an `Err` here rather than the stream's first item.
    pub(crate) async fn first_segment_verified(mut self) -> Result<Self> {
        futures::future::poll_fn(|cx| self.poll_fill(cx)).await;
        if self.ready.is_empty()
            && let Some(e) = self.error.take()
        {
            return Err(e);
        }
        Ok(self)
    }
}

impl fmt::Debug for AttachmentStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentStream")
            .field("path", &self.path.as_ref())
            .field("encrypted", &self.opener.is_some())
            .field("size", &self.size)
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

/// [`AttachmentStream`] as a [`tokio::io::AsyncRead`] (from
/// [`AttachmentStream::into_async_read`]).
#[derive(Debug)]
pub struct AttachmentReader {
    stream: AttachmentStream,
    chunk: Bytes,
}

impl AttachmentReader {
    /// Plaintext bytes the reader delivers in all.
    pub fn size(&self) -> u64 {
        self.stream.size()
    }
}

/// A kms-fields error as an `io::Error` whose inner error is the [`Error`] itself.
pub(crate) fn to_io_error(e: Error) -> io::Error {
    let kind = match e.kind() {
        ErrorKind::DecryptionFailed | ErrorKind::BadFormat => io::ErrorKind::InvalidData,
        ErrorKind::NotFound => io::ErrorKind::NotFound,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

impl AsyncRead for AttachmentReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.chunk.is_empty() {
            match ready!(Pin::new(&mut this.stream).poll_next(cx)) {
                Some(Ok(chunk)) => this.chunk = chunk,
                Some(Err(e)) => return Poll::Ready(Err(to_io_error(e))),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.chunk.len().min(buf.remaining());
        buf.put_slice(&this.chunk[..n]);
        this.chunk.advance(n);
        Poll::Ready(Ok(()))
    }
}
