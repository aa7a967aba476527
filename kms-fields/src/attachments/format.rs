//! The attachment stream format, version 1 — frozen (see the [module docs](super) for the
//! specification). Everything that decides a byte of the format lives in this file, next to its
//! frozen-byte tests.
//!
//! Security invariants of the primitives below:
//! - a segment's plaintext leaves `Opener` only after its tag verified;
//! - the nonce of segment `i` is `prefix ‖ i ‖ last`, so segments cannot be reordered, dropped
//!   from the end, or moved from another object (another salt means another key, and another
//!   prefix means another nonce);
//! - the header is the associated data of every segment, so changing the segment size, salt or
//!   prefix fails every segment;
//! - one encoding per plaintext length: [`plaintext_len`] rejects every stored length the
//!   encoder cannot produce (an empty final segment after others, a final segment under 16 bytes).

use std::collections::VecDeque;

use bytes::Bytes;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::cipher::Backend;
use crate::data_key::DataKey;
use crate::error::{Error, ErrorKind, Result};

/// The first four bytes of every encrypted attachment.
pub const MAGIC: [u8; 4] = *b"KMSF";
/// The format version this crate writes (byte 4 of the header).
pub const FORMAT_VERSION: u8 = 1;
/// Length of the header in bytes.
pub const HEADER_LEN: usize = 48;
/// Length of the random HKDF salt in the header.
pub const SALT_LEN: usize = 32;
/// Length of the random nonce prefix in the header.
pub const NONCE_PREFIX_LEN: usize = 7;
/// Length of the AES-GCM tag that ends every segment.
pub const TAG_LEN: usize = 16;
/// Smallest allowed segment size (plaintext bytes per segment): 1 KiB.
pub const MIN_SEGMENT_SIZE: u32 = 1 << 10;
/// Largest allowed segment size: 16 MiB.
pub const MAX_SEGMENT_SIZE: u32 = 16 << 20;
/// The default segment size: 64 KiB.
pub const DEFAULT_SEGMENT_SIZE: u32 = 64 << 10;
/// At most 2^32 segments per object (the segment index is a `u32`).
pub const MAX_SEGMENTS: u64 = 1 << 32;
/// The fixed part of the HKDF `info`; the full info is `KDF_INFO ‖ 0x00 ‖ logical name`.
pub const KDF_INFO: &[u8] = b"kms-fields attachment v1";

const NONCE_LEN: usize = 12;

/// The 48-byte header: `"KMSF" ‖ version ‖ segment size (u32 BE) ‖ salt (32) ‖ nonce prefix (7)`.
///
/// Salt and prefix are public values (they are stored in the clear); `Debug` shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    segment_size: u32,
    salt: [u8; SALT_LEN],
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

/// `Config` error unless `segment_size` is within 1 KiB ..= 16 MiB.
pub(crate) fn check_segment_size(segment_size: u32) -> Result<()> {
    if (MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size) {
        Ok(())
    } else {
        Err(Error::config(format!(
            "attachment segment size must be between {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE} bytes, got {segment_size}"
        )))
    }
}

impl Header {
    /// A header with a fresh random salt and nonce prefix from the OS CSPRNG.
    pub fn generate(segment_size: u32) -> Result<Self> {
        check_segment_size(segment_size)?;
        let mut random = [0u8; SALT_LEN + NONCE_PREFIX_LEN];
        getrandom::fill(&mut random)
            .map_err(|e| Error::config(format!("the OS random number generator failed: {e}")))?;
        let mut salt = [0u8; SALT_LEN];
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        salt.copy_from_slice(&random[..SALT_LEN]);
        nonce_prefix.copy_from_slice(&random[SALT_LEN..]);
        Ok(Self {
            segment_size,
            salt,
            nonce_prefix,
        })
    }

    /// A header with a caller-chosen salt and prefix. Only for known-answer tests: a salt must
    /// never repeat under one data key and logical name.
    #[doc(hidden)]
    pub fn with_salt_and_prefix(
        segment_size: u32,
        salt: [u8; SALT_LEN],
        nonce_prefix: [u8; NONCE_PREFIX_LEN],
    ) -> Result<Self> {
        check_segment_size(segment_size)?;
        Ok(Self {
            segment_size,
            salt,
            nonce_prefix,
        })
    }

    /// Plaintext bytes per segment.
    pub fn segment_size(&self) -> u32 {
        self.segment_size
    }

    /// The format version (always [`FORMAT_VERSION`] for a parsed header).
    pub fn version(&self) -> u8 {
        FORMAT_VERSION
    }

    /// The 48 header bytes as stored (and as bound into every segment).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = FORMAT_VERSION;
        out[5..9].copy_from_slice(&self.segment_size.to_be_bytes());
        out[9..41].copy_from_slice(&self.salt);
        out[41..48].copy_from_slice(&self.nonce_prefix);
        out
    }

    /// Parse the first bytes of a stored object (at least [`HEADER_LEN`] are needed).
    ///
    /// Errors: not starting with `KMSF`, an unknown version or a segment size out of range →
    /// `BadFormat`; `KMSF` with fewer than 48 bytes in all → `DecryptionFailed`
    /// (a truncated attachment).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(Error::bad_format(
                "not a kms-fields encrypted attachment (no KMSF header)",
            ));
        }
        if bytes.len() < HEADER_LEN {
            return Err(truncated());
        }
        if bytes[4] != FORMAT_VERSION {
            return Err(Error::bad_format(format!(
                "unsupported attachment format version {}",
                bytes[4]
            )));
        }
        let mut size = [0u8; 4];
        size.copy_from_slice(&bytes[5..9]);
        let segment_size = u32::from_be_bytes(size);
        if check_segment_size(segment_size).is_err() {
            return Err(Error::bad_format(format!(
                "attachment header: segment size {segment_size} out of range"
            )));
        }
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&bytes[9..41]);
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        nonce_prefix.copy_from_slice(&bytes[41..48]);
        Ok(Self {
            segment_size,
            salt,
            nonce_prefix,
        })
    }

    fn nonce(&self, index: u64, last: bool) -> Result<[u8; NONCE_LEN]> {
        let index = u32::try_from(index).map_err(|_| too_many_segments())?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..NONCE_PREFIX_LEN].copy_from_slice(&self.nonce_prefix);
        nonce[7..11].copy_from_slice(&index.to_be_bytes());
        nonce[11] = u8::from(last);
        Ok(nonce)
    }
}

fn truncated() -> Error {
    Error::new(
        ErrorKind::DecryptionFailed,
        "Decryption failed: the attachment is truncated or its length was altered",
    )
}

fn too_many_segments() -> Error {
    Error::config("attachment too large: more than 2^32 segments")
}

/// The per-object key: HKDF-SHA256(ikm = data key, salt = header salt,
/// info = `"kms-fields attachment v1" ‖ 0x00 ‖ name`), 32 bytes. Public only for
/// known-answer tests.
#[doc(hidden)]
pub fn derive_object_key(data_key: &DataKey, header: &Header, name: &str) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(&header.salt), data_key.expose_secret());
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF's 255 × 32 limit, so expand cannot fail.
    let _ = hk.expand_multi_info(&[KDF_INFO, &[0u8], name.as_bytes()], okm.as_mut());
    okm
}

/// Stored length of a `plaintext_len`-byte attachment:
/// `48 + P + 16 × max(1, ceil(P / S))`. `Config` error past 2^32 segments.
pub fn encrypted_len(plaintext_len: u64, segment_size: u32) -> Result<u64> {
    check_segment_size(segment_size)?;
    let segments = plaintext_len.div_ceil(u64::from(segment_size)).max(1);
    if segments > MAX_SEGMENTS {
        return Err(too_many_segments());
    }
    Ok(HEADER_LEN as u64 + plaintext_len + TAG_LEN as u64 * segments)
}

/// The layout of a stored object, computed from its length and segment size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub segment_size: u64,
    /// Number of segments (≥ 1).
    pub segments: u64,
    /// Stored length of the final segment (16 ..= segment size + 16).
    pub last_len: u64,
    pub plaintext_len: u64,
}

impl Layout {
    /// Stored bytes of one full segment.
    pub fn full_len(&self) -> u64 {
        self.segment_size + TAG_LEN as u64
    }

    /// Offset of segment `i` in the stored object.
    pub fn offset(&self, i: u64) -> u64 {
        HEADER_LEN as u64 + i * self.full_len()
    }

    /// End (exclusive) of segment `i` in the stored object.
    pub fn end(&self, i: u64) -> u64 {
        if i + 1 >= self.segments {
            self.offset(self.segments - 1) + self.last_len
        } else {
            self.offset(i + 1)
        }
    }
}

/// The layout of a `stored_len`-byte object; `DecryptionFailed` for a length the encoder cannot
/// produce (truncated, extended).
pub(crate) fn layout(stored_len: u64, segment_size: u32) -> Result<Layout> {
    let s = u64::from(segment_size);
    let full = s + TAG_LEN as u64;
    let body = stored_len
        .checked_sub(HEADER_LEN as u64)
        .filter(|b| *b >= TAG_LEN as u64)
        .ok_or_else(truncated)?;
    let segments = body.div_ceil(full);
    let last_len = body - (segments - 1) * full;
    if last_len < TAG_LEN as u64
        || (last_len == TAG_LEN as u64 && segments > 1)
        || segments > MAX_SEGMENTS
    {
        return Err(truncated());
    }
    Ok(Layout {
        segment_size: s,
        segments,
        last_len,
        plaintext_len: body - TAG_LEN as u64 * segments,
    })
}

/// The plaintext length of a `stored_len`-byte object (inverse of [`encrypted_len`]);
/// `DecryptionFailed` if no plaintext length encodes to `stored_len`, and, as for
/// [`encrypted_len`], a `Config` error for a segment size outside 1 KiB ..= 16 MiB.
pub fn plaintext_len(stored_len: u64, segment_size: u32) -> Result<u64> {
    check_segment_size(segment_size)?;
    Ok(layout(stored_len, segment_size)?.plaintext_len)
}

/// Streaming encryption: plaintext in, sealed segments out. A segment is sealed only once it is
/// known whether more plaintext follows (the last-segment flag), so a full segment waits for the
/// next byte or for [`finish`](Self::finish).
pub(crate) struct Sealer {
    backend: Backend,
    /// The per-object key; its AES key schedule is built once for all segments.
    key: DataKey,
    header: Header,
    header_bytes: [u8; HEADER_LEN],
    segment_size: usize,
    index: u64,
    buf: Vec<u8>,
    plaintext_len: u64,
}

impl Sealer {
    pub fn new(backend: Backend, data_key: &DataKey, name: &str, header: Header) -> Self {
        let segment_size = header.segment_size as usize;
        Self {
            backend,
            key: DataKey::new(derive_object_key(data_key, &header, name)),
            header,
            header_bytes: header.to_bytes(),
            segment_size,
            index: 0,
            buf: Vec::with_capacity(segment_size + TAG_LEN),
            plaintext_len: 0,
        }
    }

    pub fn header_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(&self.header_bytes)
    }

    pub fn segment_size(&self) -> usize {
        self.segment_size
    }

    /// A buffer for the next segment's plaintext (capacity for its tag too).
    pub fn fresh_buffer(&self) -> Vec<u8> {
        Vec::with_capacity(self.segment_size + TAG_LEN)
    }

    /// Whether the current segment holds `segment size` bytes.
    pub fn is_full(&self) -> bool {
        self.buf.len() == self.segment_size
    }

    /// The current segment's buffer, for reading plaintext straight into it (never beyond the
    /// segment size: use `BufMut::limit(segment_size - len)`).
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// More plaintext follows `next` (the start of the next segment, at most `segment size`
    /// bytes, not empty): seal the full current segment as a non-final one.
    pub fn seal_full(&mut self, next: Vec<u8>) -> Result<Bytes> {
        debug_assert!(self.is_full() && !next.is_empty() && next.len() <= self.segment_size);
        if self.index + 1 >= MAX_SEGMENTS {
            return Err(too_many_segments());
        }
        let seg = std::mem::replace(&mut self.buf, next);
        self.seal(seg, false)
    }

    /// Copy `data` in, pushing every segment that is now known not to be the last.
    pub fn update(&mut self, mut data: &[u8], out: &mut Vec<Bytes>) -> Result<()> {
        while !data.is_empty() {
            let take = if self.is_full() {
                let take = data.len().min(self.segment_size);
                let mut next = self.fresh_buffer();
                next.extend_from_slice(&data[..take]);
                out.push(self.seal_full(next)?);
                take
            } else {
                let take = data.len().min(self.segment_size - self.buf.len());
                self.buf.extend_from_slice(&data[..take]);
                take
            };
            data = &data[take..];
        }
        Ok(())
    }

    /// Seal the current segment as the final one (empty only for an empty attachment);
    /// returns it and the attachment's plaintext length.
    pub fn finish(mut self) -> Result<(Bytes, u64)> {
        let seg = std::mem::take(&mut self.buf);
        let last = self.seal(seg, true)?;
        Ok((last, self.plaintext_len))
    }

    fn seal(&mut self, mut seg: Vec<u8>, last: bool) -> Result<Bytes> {
        let nonce = self.header.nonce(self.index, last)?;
        self.plaintext_len += seg.len() as u64;
        self.backend
            .seal_with_key(&self.key, &nonce, &self.header_bytes, &mut seg, 0)?;
        self.index += 1;
        Ok(Bytes::from(seg))
    }
}

/// Where the segments of a stream end.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Framing {
    /// A whole object after its header: the final segment is whatever remains at the end of
    /// the stream (one segment of look-ahead, no length needed).
    ToEnd,
    /// Segments `first ..= stop` of an object with the given layout (a ranged read).
    Range { stop: u64, layout: Layout },
}

/// Streaming decryption: stored bytes in (after the header), verified plaintext segments out.
pub(crate) struct Opener {
    backend: Backend,
    /// The per-object key; its AES key schedule is built once for all segments.
    key: DataKey,
    header: Header,
    header_bytes: [u8; HEADER_LEN],
    full_len: usize,
    index: u64,
    framing: Framing,
    buf: Vec<u8>,
    done: bool,
}

impl Opener {
    /// An opener whose first segment is `first`.
    pub fn new(
        backend: Backend,
        data_key: &DataKey,
        name: &str,
        header: Header,
        first: u64,
        framing: Framing,
    ) -> Self {
        let full_len = header.segment_size as usize + TAG_LEN;
        Self {
            backend,
            key: DataKey::new(derive_object_key(data_key, &header, name)),
            header,
            header_bytes: header.to_bytes(),
            full_len,
            index: first,
            framing,
            buf: Vec::with_capacity(full_len),
            done: false,
        }
    }

    /// Stored length of the current segment, when it is known in advance.
    fn expected_len(&self) -> usize {
        match self.framing {
            Framing::ToEnd => self.full_len,
            Framing::Range { layout, .. } => {
                (layout.end(self.index) - layout.offset(self.index)) as usize
            }
        }
    }

    /// Feed stored bytes; verified plaintext segments are pushed to `out`.
    pub fn update(&mut self, mut data: &[u8], out: &mut VecDeque<Bytes>) -> Result<()> {
        while !data.is_empty() {
            if self.done {
                return Err(truncated());
            }
            if matches!(self.framing, Framing::ToEnd) && self.buf.len() == self.full_len {
                // More bytes follow, so the buffered full segment is not the final one.
                out.push_back(self.open_current(false)?);
            }
            let want = self.expected_len();
            let take = data.len().min(want - self.buf.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if let Framing::Range { stop, layout } = self.framing
                && self.buf.len() == want
            {
                let last = self.index + 1 == layout.segments;
                let at_stop = self.index == stop;
                out.push_back(self.open_current(last)?);
                self.done = at_stop;
            }
        }
        Ok(())
    }

    /// The stream ended: open the final segment (`ToEnd`), or check that the range is complete.
    pub fn finish(&mut self) -> Result<Option<Bytes>> {
        match self.framing {
            Framing::Range { .. } if self.done && self.buf.is_empty() => Ok(None),
            Framing::Range { .. } => Err(truncated()),
            Framing::ToEnd if self.done => Ok(None),
            Framing::ToEnd => {
                let seg = self.open_current(true)?;
                self.done = true;
                Ok(Some(seg))
            }
        }
    }

    fn open_current(&mut self, last: bool) -> Result<Bytes> {
        let len = self.buf.len();
        // A final segment is 16 bytes (empty) only in an empty attachment.
        if len < TAG_LEN || (last && len == TAG_LEN && self.index > 0) {
            self.done = true;
            return Err(truncated());
        }
        let nonce = match self.header.nonce(self.index, last) {
            Ok(n) => n,
            Err(_) => {
                self.done = true;
                return Err(truncated());
            }
        };
        let mut seg = std::mem::replace(&mut self.buf, Vec::with_capacity(self.full_len));
        if let Err(e) = self
            .backend
            .open_with_key(&self.key, &nonce, &self.header_bytes, &mut seg)
        {
            self.done = true;
            return Err(e);
        }
        self.index += 1;
        Ok(Bytes::from(seg))
    }
}

/// Encrypt a whole attachment in memory with a caller-chosen header. Only for known-answer
/// tests and small objects; the store streams.
#[doc(hidden)]
pub fn encrypt_to_vec(
    backend: Backend,
    data_key: &DataKey,
    name: &str,
    header: Header,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let mut sealer = Sealer::new(backend, data_key, name, header);
    let mut out = sealer.header_bytes().to_vec();
    let mut segs = Vec::new();
    sealer.update(plaintext, &mut segs)?;
    for s in segs {
        out.extend_from_slice(&s);
    }
    out.extend_from_slice(&sealer.finish()?.0);
    Ok(out)
}

/// Decrypt a whole attachment held in memory (header included).
#[doc(hidden)]
pub fn decrypt_from_slice(
    backend: Backend,
    data_key: &DataKey,
    name: &str,
    stored: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let header = Header::parse(stored)?;
    layout(stored.len() as u64, header.segment_size)?;
    let mut opener = Opener::new(backend, data_key, name, header, 0, Framing::ToEnd);
    let mut segs = VecDeque::new();
    opener.update(&stored[HEADER_LEN..], &mut segs)?;
    segs.extend(opener.finish()?);
    let mut out = Zeroizing::new(Vec::new());
    for s in segs {
        out.extend_from_slice(&s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DataKey {
        DataKey::from_slice(&[0x11; 32]).unwrap()
    }

    fn header(s: u32) -> Header {
        Header::with_salt_and_prefix(s, [0x22; 32], [0x33; 7]).unwrap()
    }

    #[test]
    fn header_bytes_are_frozen() {
        let h = Header::with_salt_and_prefix(65536, [0xAB; 32], [1, 2, 3, 4, 5, 6, 7]).unwrap();
        let b = h.to_bytes();
        assert_eq!(&b[..9], b"KMSF\x01\x00\x01\x00\x00");
        assert_eq!(&b[9..41], &[0xAB; 32]);
        assert_eq!(&b[41..], &[1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(Header::parse(&b).unwrap(), h);
    }

    #[test]
    fn nonce_layout() {
        let h = header(1024);
        let n = h.nonce(0x0102_0304, true).unwrap();
        assert_eq!(n, [0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 1, 2, 3, 4, 1]);
        assert_eq!(h.nonce(5, false).unwrap()[7..], [0, 0, 0, 5, 0]);
        assert!(h.nonce(1 << 32, false).is_err());
    }

    #[test]
    fn segment_size_bounds() {
        for bad in [0, 1023, (16 << 20) + 1, u32::MAX] {
            let e = Header::generate(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
        }
        for ok in [1024, 65536, 16 << 20] {
            assert_eq!(Header::generate(ok).unwrap().segment_size(), ok);
        }
        let mut b = header(1024).to_bytes();
        b[5..9].copy_from_slice(&1023u32.to_be_bytes());
        assert_eq!(Header::parse(&b).unwrap_err().kind(), ErrorKind::BadFormat);
    }

    #[test]
    fn parse_errors() {
        assert_eq!(Header::parse(b"").unwrap_err().kind(), ErrorKind::BadFormat);
        assert_eq!(
            Header::parse(b"PK\x03\x04 zip").unwrap_err().kind(),
            ErrorKind::BadFormat
        );
        assert_eq!(
            Header::parse(b"KM").unwrap_err().kind(),
            ErrorKind::BadFormat
        );
        assert_eq!(
            Header::parse(b"KMSF\x01").unwrap_err().kind(),
            ErrorKind::DecryptionFailed
        );
        let mut b = header(1024).to_bytes();
        b[4] = 2;
        let e = Header::parse(&b).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadFormat);
        assert!(e.to_string().contains("version 2"));
    }

    #[test]
    fn lengths_are_one_to_one() {
        let s = 1024u32;
        let mut seen = std::collections::HashSet::new();
        for p in 0..(5 * 1024 + 3) {
            let l = encrypted_len(p, s).unwrap();
            assert_eq!(plaintext_len(l, s).unwrap(), p, "p = {p}");
            assert!(seen.insert(l));
        }
        // every other length is rejected
        for l in 0..encrypted_len(5 * 1024, s).unwrap() {
            if !seen.contains(&l) {
                assert_eq!(
                    plaintext_len(l, s).unwrap_err().kind(),
                    ErrorKind::DecryptionFailed
                );
            }
        }
        assert_eq!(encrypted_len(0, s).unwrap(), 64);
        assert_eq!(encrypted_len(1024, s).unwrap(), 48 + 1024 + 16);
        assert_eq!(encrypted_len(1025, s).unwrap(), 48 + 1025 + 32);
        assert_eq!(
            encrypted_len(1024 << 32, s).unwrap(),
            48 + (1024 << 32) + (16 << 32)
        );
        assert_eq!(
            encrypted_len((1024 << 32) + 1, s).unwrap_err().kind(),
            ErrorKind::Config
        );
    }

    #[test]
    fn plaintext_len_rejects_a_segment_size_encrypted_len_rejects() {
        for bad in [0, 1, 1023, (16 << 20) + 1, u32::MAX] {
            assert_eq!(encrypted_len(0, bad).unwrap_err().kind(), ErrorKind::Config);
            for stored in [64, 48 + 16 + 100, 1 << 20] {
                assert_eq!(
                    plaintext_len(stored, bad).unwrap_err().kind(),
                    ErrorKind::Config,
                    "segment size {bad}, stored length {stored}"
                );
            }
        }
    }

    #[test]
    fn round_trip_every_length_and_backend() {
        for &backend in Backend::all() {
            for p in [0usize, 1, 1023, 1024, 1025, 2048, 3000] {
                let pt: Vec<u8> = (0..p).map(|i| (i * 7 + 3) as u8).collect();
                let ct = encrypt_to_vec(backend, &key(), "doc", header(1024), &pt).unwrap();
                assert_eq!(ct.len() as u64, encrypted_len(p as u64, 1024).unwrap());
                for &b2 in Backend::all() {
                    assert_eq!(
                        &decrypt_from_slice(b2, &key(), "doc", &ct).unwrap()[..],
                        &pt[..]
                    );
                }
            }
        }
    }

    #[test]
    fn chunked_feeding_matches_whole() {
        let pt: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let whole = encrypt_to_vec(Backend::default(), &key(), "a", header(1024), &pt).unwrap();
        for chunk in [1usize, 7, 1024, 1025, 4096] {
            let mut sealer = Sealer::new(Backend::default(), &key(), "a", header(1024));
            let mut out = sealer.header_bytes().to_vec();
            let mut segs = Vec::new();
            for c in pt.chunks(chunk) {
                sealer.update(c, &mut segs).unwrap();
            }
            segs.push(sealer.finish().unwrap().0);
            for s in segs {
                out.extend_from_slice(&s);
            }
            assert_eq!(out, whole);
            let mut opener = Opener::new(
                Backend::default(),
                &key(),
                "a",
                header(1024),
                0,
                Framing::ToEnd,
            );
            let mut segs = VecDeque::new();
            for c in whole[HEADER_LEN..].chunks(chunk) {
                opener.update(c, &mut segs).unwrap();
            }
            segs.extend(opener.finish().unwrap());
            assert_eq!(Vec::from(segs).concat(), pt);
        }
    }

    #[test]
    fn every_truncation_fails() {
        let pt = vec![9u8; 2500];
        let ct = encrypt_to_vec(Backend::default(), &key(), "a", header(1024), &pt).unwrap();
        for n in 0..ct.len() {
            let e = decrypt_from_slice(Backend::default(), &key(), "a", &ct[..n]).unwrap_err();
            assert!(
                matches!(e.kind(), ErrorKind::DecryptionFailed | ErrorKind::BadFormat),
                "n = {n}: {e:?}"
            );
        }
    }

    #[test]
    fn every_flipped_bit_of_a_small_object_fails() {
        let ct = encrypt_to_vec(Backend::default(), &key(), "a", header(1024), b"hi").unwrap();
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 0x01;
            assert!(
                decrypt_from_slice(Backend::default(), &key(), "a", &bad).is_err(),
                "byte {i}"
            );
        }
    }
}
