//! Property checks over the decoders of stored data, shared by the cargo-fuzz targets in
//! `fuzz/` (nightly) and the corpus replay test `tests/fuzz_corpus.rs` (stable, part of the
//! test suite). Feature `fuzzing`; not a public API.
//!
//! Every function takes arbitrary bytes and panics only when a property is broken: a decoder
//! panicked, an error had an unexpected kind, an encoding did not parse back to the same value,
//! or a tampered value decrypted to a plaintext other than the original. The keys are real
//! (the data key of the first Ruby vector row, fixed local and blind-index master keys), so
//! inputs built from [`seeds`] get past the format checks into the cryptography.
//!
//! Input layout: most targets read a selector byte first (which variant of the decoder, which
//! options), then the value; [`seeds`] writes inputs in that layout.

// A property checker: a broken property is a panic, which is what the fuzzer and the replay
// test look for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use zeroize::Zeroizing;

use crate::cipher::{self, AttributeOptions, Backend, NONCE_LEN, TAG_LEN};
use crate::codec::{Binary, Codec, MessagePack, Text, lockbox};
use crate::context::EncryptionContext;
use crate::data_key::DataKey;
use crate::encoding;
use crate::envelope::StoredKey;
use crate::error::ErrorKind;
use crate::keyring::{KeyIdResolver, KeySpec};
use crate::kms::Kms;
use crate::kms_box::KmsBox;
use crate::provider::{LocalKey, Provider, ProviderKind, test_key};

/// The fuzz targets: name (= `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`) and
/// property function.
pub const TARGETS: &[(&str, Check)] = &[
    ("key_column", key_column),
    ("attribute_cipher", attribute_cipher),
    ("codecs", codecs),
    ("providers", providers),
    ("kms_box", kms_box),
    #[cfg(feature = "kms-rails")]
    ("kms_rails", kms_rails),
    #[cfg(feature = "attachments")]
    ("attachments", attachments),
    ("blind_index_key", blind_index_key),
];

/// A property check over arbitrary input bytes.
pub type Check = fn(&[u8]);

/// The data key of the first row of the Ruby vectors (`insecure_v1`, `User#1`, `kms_key`).
pub const DATA_KEY_HEX: &str = "ef43ba7f72efdf289e6955b63457bcbb29c826172111859e61d03204663b7ee9";
/// The local master key the targets use (`local/fuzz`).
pub const LOCAL_MASTER_KEY: [u8; 32] = [0x4c; 32];
/// The associated data of native-mode selectors.
pub const NATIVE_ATTRIBUTE: &str = "email";

fn data_key() -> DataKey {
    let mut bytes = Zeroizing::new([0u8; 32]);
    for (i, b) in bytes.iter_mut().enumerate() {
        let pair = &DATA_KEY_HEX[2 * i..2 * i + 2];
        *b = u8::from_str_radix(pair, 16).unwrap_or_default();
    }
    DataKey::from_slice(bytes.as_ref()).unwrap_or_else(|_| unreachable!("32 bytes"))
}

fn context() -> EncryptionContext {
    EncryptionContext::for_model("User", 1)
}

fn kms() -> &'static Kms {
    static KMS: OnceLock<Kms> = OnceLock::new();
    KMS.get_or_init(|| {
        Kms::builder()
            .insecure_test_key()
            .local(local_provider())
            .build()
    })
}

fn local_provider() -> LocalKey {
    LocalKey::new()
        .with_key("fuzz", &LOCAL_MASTER_KEY)
        .unwrap_or_else(|_| unreachable!("a 32-byte key"))
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    crate::blocking::block_on(future).unwrap_or_else(|e| panic!("no runtime: {e}"))
}

/// `(selector, rest)`; an empty input is selector 0.
fn split(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((s, rest)) => (*s, rest),
        None => (0, data),
    }
}

/// Apply the edits `(position, xor)` read from `edits` to `value`, and a truncation when the
/// first edit byte says so. Returns whether anything changed.
fn tamper(value: &mut Vec<u8>, edits: &[u8]) -> bool {
    let before = value.clone();
    if value.is_empty() {
        value.extend_from_slice(edits);
        return !edits.is_empty();
    }
    let mut chunks = edits.chunks_exact(3);
    if let Some(first) = edits.first()
        && first & 0x80 != 0
    {
        let keep = usize::from(u16::from_be_bytes([
            first & 0x7f,
            *edits.get(1).unwrap_or(&0),
        ]));
        value.truncate(keep % value.len());
        chunks = edits.get(2..).unwrap_or_default().chunks_exact(3);
    }
    for e in chunks {
        if value.is_empty() {
            break;
        }
        let pos = usize::from(u16::from_be_bytes([e[0], e[1]])) % value.len();
        value[pos] ^= e[2];
    }
    *value != before
}

fn padding_of(selector: u8) -> Option<usize> {
    match (selector >> 1) & 0x3 {
        0 => None,
        1 => Some(16),
        2 => Some(32),
        _ => Some(usize::from(selector >> 3) + 1),
    }
}

fn options_of(selector: u8) -> AttributeOptions<'static> {
    let opts = if selector & 1 == 0 {
        AttributeOptions::lockbox()
    } else {
        AttributeOptions::native(NATIVE_ATTRIBUTE)
    };
    opts.padding(padding_of(selector))
}

// ---------------------------------------------------------------------------------------------

/// Key column: `StoredKey` parse/encode (current and legacy forms), `version_of`, key id
/// resolution and version lookup.
pub fn key_column(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    match StoredKey::parse(text) {
        Ok(k) => {
            assert!(
                !k.ciphertext.is_empty(),
                "parse never returns an empty ciphertext"
            );
            let written = k.encode();
            let again = StoredKey::parse(&written)
                .unwrap_or_else(|e| panic!("encode() of a parsed value must parse: {e}"));
            assert_eq!(
                (again.version, &again.ciphertext, &again.legacy),
                (k.version, &k.ciphertext, &None)
            );
            assert_eq!(again.encode(), written);
            assert_eq!(StoredKey::version_of(&written), Some(k.version));
            match StoredKey::version_of(text) {
                Some(v) => assert_eq!((v, &k.legacy), (k.version, &None)),
                None => assert!(k.legacy.is_some(), "an unprefixed value is legacy"),
            }
            if let Some(crate::envelope::Legacy::Google { key_id }) = &k.legacy {
                assert_eq!(ProviderKind::for_key_id(key_id), ProviderKind::Gcp);
            }
            // the stored version picks a key version, or is not active
            let spec = KeySpec::new()
                .key_id("insecure-test-key")
                .version(2)
                .previous_version(1, "local/fuzz");
            match spec.resolve(k.version, None) {
                Ok(v) => assert!(matches!(k.version, 1 | 2), "{}", v.key_id),
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::VersionNotActive(k.version));
                    assert_eq!(e.to_string(), format!("Version not active: {}", k.version));
                }
            }
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::BadFormat, "{e}"),
    }
    // key id resolution (kms_rails' bare names): idempotent, keeps the provider
    let resolver = KeyIdResolver::new()
        .alias_prefix("app-")
        .arn_prefix("arn:aws:kms:us-east-1:123456789012:");
    for r in [resolver, KeyIdResolver::new().alias_prefix("p/")] {
        let resolved = r.resolve(text);
        assert_eq!(r.resolve(&resolved), resolved, "resolution is idempotent");
        assert_eq!(
            ProviderKind::for_key_id(&resolved),
            ProviderKind::for_key_id(text)
        );
    }
}

/// Attribute cipher (both backends): decrypt with the real data key; an accepted ciphertext
/// re-encrypts to the same bytes under its nonce; every tampering of a valid ciphertext fails.
///
/// Selector: bit 0 native associated data, bits 1–2 padding (none, 16, 32, `(s >> 3) + 1`),
/// bit 7 the value is strict base64 text; with bit 6 set the rest is `nonce ‖ edits ‖ plaintext`
/// instead (`edits`: 6 bytes, see `tamper`), encrypted then tampered.
pub fn attribute_cipher(data: &[u8]) {
    let (selector, rest) = split(data);
    let key = data_key();
    let opts = options_of(selector);
    if selector & 0x40 != 0 {
        return cipher_tamper(&key, opts, rest);
    }
    let raw = if selector & 0x80 != 0 {
        let text = String::from_utf8_lossy(rest);
        match encoding::strict_decode(&text) {
            Ok(raw) => {
                let via_text = cipher::decrypt_base64(&key, &text, opts).map(|p| p.to_vec());
                let via_raw = cipher::decrypt(&key, &raw, opts).map(|p| p.to_vec());
                assert_eq!(via_text.is_ok(), via_raw.is_ok());
                raw
            }
            Err(_) => {
                let e = cipher::decrypt_base64(&key, &text, opts).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::BadFormat);
                return;
            }
        }
    } else {
        rest.to_vec()
    };
    let mut first: Option<std::result::Result<Vec<u8>, ErrorKind>> = None;
    for &backend in Backend::all() {
        let out = cipher::decrypt_with(backend, &key, &raw, opts)
            .map(|p| p.to_vec())
            .map_err(|e| e.kind());
        if let Err(kind) = &out {
            assert_eq!(*kind, ErrorKind::DecryptionFailed);
        }
        if let Ok(plaintext) = &out {
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(&raw[..NONCE_LEN]);
            let again = cipher::encrypt_with_nonce(backend, &key, &nonce, plaintext, opts)
                .unwrap_or_else(|e| panic!("re-encrypt: {e}"));
            assert_eq!(
                again, raw,
                "an accepted ciphertext is the encryption of its plaintext"
            );
        }
        match &first {
            None => first = Some(out),
            Some(f) => assert_eq!(f, &out, "backends agree"),
        }
    }
}

fn cipher_tamper(key: &DataKey, opts: AttributeOptions<'_>, rest: &[u8]) {
    if rest.len() < NONCE_LEN + 6 {
        return;
    }
    let (nonce, rest) = rest.split_at(NONCE_LEN);
    let (edits, plaintext) = rest.split_at(6);
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(nonce);
    for &backend in Backend::all() {
        let ct = match cipher::encrypt_with_nonce(backend, key, &n, plaintext, opts) {
            Ok(ct) => ct,
            Err(e) => {
                assert_eq!(
                    e.kind(),
                    ErrorKind::Config,
                    "only a bad padding block fails"
                );
                return;
            }
        };
        assert!(ct.len() >= NONCE_LEN + TAG_LEN + plaintext.len());
        let back = cipher::decrypt_with(backend, key, &ct, opts).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&back[..], plaintext);
        let mut bad = ct.clone();
        if tamper(&mut bad, edits) {
            for &b2 in Backend::all() {
                let e = cipher::decrypt_with(b2, key, &bad, opts).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::DecryptionFailed);
            }
        }
        // another attribute's associated data, or the other mode, fails
        let other = AttributeOptions::native("phone").padding(opts.padding);
        assert_eq!(
            cipher::decrypt_with(backend, key, &ct, other)
                .unwrap_err()
                .kind(),
            ErrorKind::DecryptionFailed
        );
    }
}

/// Plaintext codecs: text, binary, MessagePack and every Lockbox type. A decoded value encodes
/// to bytes that decode to the same value; exact formats encode back to the same bytes.
///
/// Selector (mod 12) picks the codec.
pub fn codecs(data: &[u8]) {
    let (selector, bytes) = split(data);
    fn stable<C: Codec>(bytes: &[u8]) -> Option<(C::Value, Zeroizing<Vec<u8>>)>
    where
        C::Value: PartialEq + std::fmt::Debug,
        C::Value: std::borrow::Borrow<C::Input>,
    {
        stable_unless::<C>(bytes, |_| false)
    }
    /// As `stable`, skipping the identity checks for values `lossy` says have no exact form.
    fn stable_unless<C: Codec>(
        bytes: &[u8],
        lossy: fn(&C::Value) -> bool,
    ) -> Option<(C::Value, Zeroizing<Vec<u8>>)>
    where
        C::Value: PartialEq + std::fmt::Debug,
        C::Value: std::borrow::Borrow<C::Input>,
    {
        use std::borrow::Borrow;
        match C::decode(bytes) {
            Ok(v) if lossy(&v) => {
                let _ = C::encode(v.borrow()).unwrap_or_else(|e| panic!("encode: {e}"));
                None
            }
            Ok(v) => {
                let written = C::encode(v.borrow()).unwrap_or_else(|e| panic!("encode: {e}"));
                let again = C::decode(&written).unwrap_or_else(|e| panic!("decode: {e}"));
                assert_eq!(
                    again, v,
                    "decode ∘ encode is the identity on decoded values"
                );
                assert_eq!(
                    &C::encode(again.borrow()).unwrap_or_else(|e| panic!("{e}"))[..],
                    &written[..],
                    "encoding is stable"
                );
                Some((v, written))
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Codec, "{e}");
                None
            }
        }
    }
    match selector % 12 {
        0 => {
            if let Some((_, w)) = stable::<Text>(bytes) {
                assert_eq!(&w[..], bytes);
            }
        }
        1 => {
            let (_, w) = stable::<Binary>(bytes).unwrap_or_else(|| panic!("binary decodes"));
            assert_eq!(&w[..], bytes);
        }
        2 => {
            // any MessagePack value through a self-describing type (Lockbox-free models use
            // MessagePack<T> for their own types; this reads every value shape)
            let _ = stable::<MessagePack<rmpv_like::Value>>(bytes);
            let _ = MessagePack::<std::collections::BTreeMap<String, u64>>::decode(bytes);
        }
        3 => {
            let b = lockbox::Boolean::decode(bytes).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(b, bytes == b"t");
        }
        4 => {
            if let Some((_, w)) = stable::<lockbox::Integer>(bytes) {
                assert_eq!(&w[..], bytes);
            }
        }
        5 => match lockbox::Float::decode(bytes) {
            Ok(f) => assert_eq!(
                &lockbox::Float::encode(&f).unwrap_or_else(|e| panic!("{e}"))[..],
                bytes,
                "floats keep their bits (NaN payloads too)"
            ),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Codec),
        },
        6 => match lockbox::Decimal::decode(bytes) {
            // a decimal reads as stored; what is written is BigDecimal#to_s("F"), which reads
            // as written and is a fixed point of encode
            Ok(v) => {
                assert_eq!(v.as_bytes(), bytes, "a decimal reads as stored");
                let w = lockbox::Decimal::encode(&v).unwrap_or_else(|e| panic!("{e}"));
                let text = lockbox::Decimal::decode(&w).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(text.as_bytes(), &w[..]);
                assert_eq!(
                    &lockbox::Decimal::encode(&text).unwrap_or_else(|e| panic!("{e}"))[..],
                    &w[..]
                );
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::Codec),
        },
        7 => {
            if let Some((v, w)) = stable::<lockbox::Json>(bytes) {
                // numbers and member order are kept: what was read is written back unchanged
                // (up to insignificant whitespace and string escapes)
                let compact: lockbox::JsonValue = v;
                assert_eq!(lockbox::Json::decode(&w).ok(), Some(compact));
                assert!(!w.iter().any(|c| matches!(c, b'<' | b'>' | b'&')));
            }
        }
        8 => {
            if let Some(((addr, prefix), w)) = stable::<lockbox::Inet>(bytes) {
                assert_eq!(w[..2], bytes[..2]);
                assert_eq!(addr.is_ipv6(), bytes[0] == 1);
                let _ = prefix;
            }
        }
        #[cfg(feature = "chrono")]
        9 => {
            // leading zeros in the year are read (`02024-01-02`), so no byte identity here
            let _ = stable::<lockbox::Date>(bytes);
        }
        #[cfg(feature = "chrono")]
        10 => {
            // a leap second has no Ruby form (written as second 59.999999999)
            use chrono::Timelike;
            let _ = stable_unless::<lockbox::DateTime>(bytes, |t| t.nanosecond() >= 1_000_000_000);
        }
        #[cfg(feature = "chrono")]
        11 => {
            use chrono::Timelike;
            let _ = stable_unless::<lockbox::Time>(bytes, |t| t.nanosecond() >= 1_000_000_000);
        }
        _ => {}
    }
}

/// A self-describing MessagePack value for the MessagePack codec check.
mod rmpv_like {
    use serde::{Deserialize, Serialize};

    /// Every MessagePack shape serde can read without a schema.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    pub enum Value {
        Nil(()),
        Bool(bool),
        Int(i64),
        UInt(u64),
        Float(FloatBits),
        Str(String),
        Bin(serde_bytes_like::Bytes),
        Array(Vec<Value>),
        Map(Map),
    }

    /// A map with its entries in order.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Map(pub Vec<(Value, Value)>);

    impl Serialize for Map {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut m = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in &self.0 {
                m.serialize_entry(k, v)?;
            }
            m.end()
        }
    }

    impl<'de> Deserialize<'de> for Map {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Map;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a map")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut a: A,
                ) -> Result<Map, A::Error> {
                    let mut out = Vec::new();
                    while let Some(e) = a.next_entry()? {
                        out.push(e);
                    }
                    Ok(Map(out))
                }
            }
            d.deserialize_map(V)
        }
    }

    /// A float compared by its bits (NaN equals itself).
    #[derive(Debug, Clone, Copy, Serialize, Deserialize)]
    #[serde(transparent)]
    pub struct FloatBits(pub f64);

    impl PartialEq for FloatBits {
        fn eq(&self, other: &Self) -> bool {
            self.0.to_bits() == other.0.to_bits()
        }
    }

    pub mod serde_bytes_like {
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        /// Raw bytes (MessagePack `bin`).
        #[derive(Debug, Clone, PartialEq)]
        pub struct Bytes(pub Vec<u8>);

        impl Serialize for Bytes {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for Bytes {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = Bytes;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("bytes")
                    }
                    fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                        Ok(Bytes(v.to_vec()))
                    }
                }
                d.deserialize_bytes(V)
            }
        }
    }
}

/// Provider ciphertexts: the test key and the local key (a real master key), and the Vault /
/// Google Cloud response mapping where it reads bytes.
///
/// Selector bit 0: 0 the rest is a ciphertext to unwrap (with the context when bit 1 is set);
/// 1 the rest is `edits (6) ‖ data key` wrapped then tampered. Selector ≥ 0x80: Vault error body
/// (JSON) / base64 plaintext; ≥ 0xc0: Google Cloud CRC32C checks.
pub fn providers(data: &[u8]) {
    let (selector, rest) = split(data);
    let ctx = context();
    let ctx = (selector & 2 != 0).then_some(&ctx);
    if selector >= 0xc0 {
        #[cfg(feature = "gcp")]
        gcp_checks(rest);
        return;
    }
    if selector >= 0x80 {
        #[cfg(feature = "vault")]
        crate::provider::vault::fuzz_responses(rest);
        return;
    }
    let local = local_provider();
    if selector & 1 == 0 {
        // test key: a ciphertext decrypts only with the context it names, and re-encrypts to
        // the same bytes when written canonically
        match test_key::decrypt(rest, ctx) {
            Ok(pt) => {
                let again = test_key::encrypt(&pt, ctx);
                assert_eq!(
                    &test_key::decrypt(&again, ctx).unwrap_or_else(|e| panic!("{e}"))[..],
                    &pt[..]
                );
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::DecryptionFailed),
        }
        // local key
        match run(local.unwrap("local/fuzz", rest, ctx)) {
            Ok(pt) => {
                // authenticated: only a genuine wrap of the master key opens; a second wrap of
                // the same plaintext opens to the same bytes
                let again =
                    run(local.wrap("local/fuzz", &pt, ctx)).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    &run(local.unwrap("local/fuzz", &again, ctx)).unwrap_or_else(|e| panic!("{e}"))
                        [..],
                    &pt[..]
                );
                let other = EncryptionContext::for_model("User", 2);
                assert_eq!(
                    run(local.unwrap("local/fuzz", rest, Some(&other)))
                        .unwrap_err()
                        .kind(),
                    ErrorKind::DecryptionFailed
                );
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::DecryptionFailed),
        }
        if let Ok(text) = std::str::from_utf8(rest) {
            let _ = LocalKey::parse_key_text(text);
        }
    } else if rest.len() >= 6 {
        let (edits, plaintext) = rest.split_at(6);
        let wrapped =
            run(local.wrap("local/fuzz", plaintext, ctx)).unwrap_or_else(|e| panic!("{e}"));
        let mut bad = wrapped.clone();
        if tamper(&mut bad, edits) {
            let e = run(local.unwrap("local/fuzz", &bad, ctx)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::DecryptionFailed);
        }
        let t = test_key::encrypt(plaintext, ctx);
        assert_eq!(
            &test_key::decrypt(&t, ctx).unwrap_or_else(|e| panic!("{e}"))[..],
            plaintext
        );
    }
}

#[cfg(feature = "gcp")]
fn gcp_checks(rest: &[u8]) {
    use crate::provider::gcp::{check_decrypt, check_encrypt, crc32c};
    let crc = crc32c(rest);
    assert!((0..=i64::from(u32::MAX)).contains(&crc));
    check_decrypt("k", rest, Some(crc)).unwrap_or_else(|e| panic!("{e}"));
    check_encrypt("k", true, true, true, rest, Some(crc)).unwrap_or_else(|e| panic!("{e}"));
    let mut bad = rest.to_vec();
    if let Some(b) = bad.first_mut() {
        *b ^= 1;
        let e = check_decrypt("k", &bad, Some(crc)).unwrap_err();
        assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::Provider, true));
    }
    assert!(check_encrypt("k", true, true, false, rest, Some(crc)).is_err());
    assert!(check_decrypt("k", rest, None).is_err());
}

/// `KmsBox`: `decrypt` of `vN:` values and `open` of sealed values, with the test key and the
/// local key; a tampered sealed value under the local key never opens to another value.
///
/// Selector bit 0: local key (else test key); bit 1: with the context; bit 2: the rest is
/// `edits (6) ‖ message`, sealed then tampered; else the rest is the stored text.
pub fn kms_box(data: &[u8]) {
    let (selector, rest) = split(data);
    let key_id = if selector & 1 != 0 {
        "local/fuzz"
    } else {
        "insecure-test-key"
    };
    let b = KmsBox::new(kms().clone(), KeySpec::new().key_id(key_id));
    let ctx = context();
    let ctx = (selector & 2 != 0).then_some(&ctx);
    let allowed = |k: ErrorKind| {
        matches!(
            k,
            ErrorKind::BadFormat
                | ErrorKind::DecryptionFailed
                | ErrorKind::VersionNotActive(_)
                | ErrorKind::Codec
                // a legacy `$gc$` / `vault:` value names a provider this Kms does not have
                | ErrorKind::ProviderUnavailable
        )
    };
    if selector & 4 != 0 {
        if rest.len() < 6 {
            return;
        }
        let (edits, message) = rest.split_at(6);
        let message = String::from_utf8_lossy(message).into_owned();
        // always sealed, even a message that looks sealed (issue 19.2)
        let sealed = run(b.seal(&message, ctx))
            .unwrap_or_else(|e| panic!("{e}"))
            .into_string();
        let opened: String = run(b.open(&sealed, ctx)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(opened, message);
        let direct = run(b.encrypt(message.as_bytes(), ctx)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            &run(b.decrypt(&direct, ctx)).unwrap_or_else(|e| panic!("{e}"))[..],
            message.as_bytes()
        );
        for original in [sealed, direct] {
            let mut bad = original.clone().into_bytes();
            if !tamper(&mut bad, edits) {
                continue;
            }
            let bad = String::from_utf8_lossy(&bad).into_owned();
            if bad == original {
                continue;
            }
            let result = if KmsBox::is_sealed(&original) {
                run(b.open::<String>(&bad, ctx)).map(String::into_bytes)
            } else {
                run(b.decrypt(&bad, ctx)).map(|p| p.to_vec())
            };
            match result {
                // the local key authenticates; the test key protects nothing, so only the
                // sealed payload (AES-GCM) is checked there
                Ok(v) if key_id == "local/fuzz" || KmsBox::is_sealed(&original) => {
                    assert_eq!(
                        v,
                        message.as_bytes(),
                        "tampering never yields another plaintext"
                    )
                }
                Ok(_) => {}
                Err(e) => assert!(allowed(e.kind()), "{e}"),
            }
        }
        return;
    }
    let text = String::from_utf8_lossy(rest);
    if let Err(e) = run(b.decrypt(&text, ctx)) {
        assert!(allowed(e.kind()), "{e}");
    }
    match run(b.open::<String>(&text, ctx)) {
        Ok(v) => {
            let again = run(b.seal(&v, ctx)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(run(b.open::<String>(&again, ctx)).ok(), Some(v));
        }
        Err(e) => assert!(allowed(e.kind()), "{e}"),
    }
}

/// kms_rails envelopes: the stored MessagePack map, the base64 parts, AES-256-CBC under a real
/// data key. CBC is unauthenticated (a tampered value may decode to garbage), so the property
/// is the inverse one: an accepted CBC ciphertext is the encryption of what it decrypts to.
///
/// Selector bit 0: the rest is a whole stored value, decrypted through the KMS (the `key` field
/// is a test-key ciphertext); else `iv (16) ‖ CBC ciphertext` under the data key.
#[cfg(feature = "kms-rails")]
pub fn kms_rails(data: &[u8]) {
    use crate::keyring::KeyVersion;
    use crate::kms_rails::{Envelope, decrypt_cbc};
    let (selector, rest) = split(data);
    let key = data_key();
    if selector & 1 != 0 {
        match Envelope::parse(rest) {
            Ok(env) => {
                let version = KeyVersion {
                    key_id: "insecure-test-key".into(),
                    provider: None,
                };
                let context = (selector & 2 != 0).then_some(("purpose", "fuzz"));
                if let Err(e) = run(env.decrypt(kms(), &version, context)) {
                    assert!(
                        matches!(e.kind(), ErrorKind::DecryptionFailed | ErrorKind::BadFormat),
                        "{e}"
                    );
                }
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::BadFormat),
        }
        return;
    }
    if rest.len() < 16 {
        return;
    }
    let (iv, blob) = rest.split_at(16);
    let mut iv16 = [0u8; 16];
    iv16.copy_from_slice(iv);
    let parts = Envelope::from_base64_parts(
        &encoding::strict_encode(&test_key::encrypt(key.expose_secret(), None)),
        &encoding::strict_encode(iv),
        &encoding::strict_encode(blob),
    );
    assert_eq!(parts.is_ok(), !blob.is_empty() && blob.len() % 16 == 0);
    match decrypt_cbc(key.expose_secret(), &iv16, blob) {
        Ok(pt) => {
            use cbc::cipher::block_padding::Pkcs7;
            use cbc::cipher::{BlockModeEncrypt, KeyIvInit};
            let enc =
                cbc::Encryptor::<aes::Aes256>::new(key.expose_secret().into(), (&iv16).into());
            assert_eq!(
                enc.encrypt_padded_vec::<Pkcs7>(&pt),
                blob,
                "CBC decrypt is the inverse of encrypt"
            );
            // through the whole envelope and the KMS
            let env = parts.unwrap_or_else(|e| panic!("{e}"));
            let back = run(env.decrypt(
                kms(),
                &crate::keyring::KeyVersion {
                    key_id: "insecure-test-key".into(),
                    provider: None,
                },
                None,
            ))
            .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&back[..], &pt[..]);
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::DecryptionFailed),
    }
}

/// Attachments: header, lengths, whole-object decryption, and reads (whole and ranged) through
/// an in-memory object store, of a genuine object tampered by the input.
///
/// Selector 0–63: the rest is a stored object (decrypted in memory and through the store);
/// 64–127: `stored length (8) ‖ segment size (4)` for the length functions; else
/// `edits (6) ‖ range (4) ‖ plaintext`, stored with 1 KiB segments, tampered, then read.
#[cfg(feature = "attachments")]
pub fn attachments(data: &[u8]) {
    use crate::attachments::format::{self, Header};
    let (selector, rest) = split(data);
    let key = data_key();
    if selector < 64 {
        let whole = format::decrypt_from_slice(Backend::default(), &key, "doc", rest);
        match &whole {
            Ok(pt) => {
                let h = Header::parse(rest).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    format::encrypted_len(pt.len() as u64, h.segment_size()).ok(),
                    Some(rest.len() as u64)
                );
                let again = format::encrypt_to_vec(Backend::default(), &key, "doc", h, pt)
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    again, rest,
                    "an accepted object is the encryption of its plaintext"
                );
            }
            Err(e) => assert!(
                matches!(e.kind(), ErrorKind::BadFormat | ErrorKind::DecryptionFailed),
                "{e}"
            ),
        }
        for &b in Backend::all() {
            let other = format::decrypt_from_slice(b, &key, "doc", rest);
            assert_eq!(other.is_ok(), whole.is_ok());
        }
        if let Ok(h) = Header::parse(rest) {
            assert_eq!(Header::parse(&h.to_bytes()).ok(), Some(h));
        }
        return;
    }
    if selector < 128 {
        let mut n = [0u8; 12];
        for (d, s) in n.iter_mut().zip(rest) {
            *d = *s;
        }
        let stored =
            u64::from_be_bytes([n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7]]) >> (selector % 32);
        let segment = u32::from_be_bytes([n[8], n[9], n[10], n[11]]) >> (selector % 16);
        match format::plaintext_len(stored, segment) {
            Ok(p) => assert_eq!(
                format::encrypted_len(p, segment).ok(),
                Some(stored),
                "inverse"
            ),
            Err(e) => assert!(matches!(
                e.kind(),
                ErrorKind::DecryptionFailed | ErrorKind::Config
            )),
        }
        if let Ok(s) = format::encrypted_len(stored, segment) {
            assert_eq!(
                format::plaintext_len(s, segment).ok(),
                Some(stored),
                "inverse"
            );
        }
        return;
    }
    if rest.len() < 10 {
        return;
    }
    let (edits, rest) = rest.split_at(6);
    let (range, plaintext) = rest.split_at(4);
    let header =
        Header::with_salt_and_prefix(1024, [0x5a; 32], [0xa5; 7]).unwrap_or_else(|e| panic!("{e}"));
    let object = format::encrypt_to_vec(Backend::default(), &key, "doc", header, plaintext)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut bad = object.clone();
    let tampered = tamper(&mut bad, edits);
    let start = u64::from(u16::from_be_bytes([range[0], range[1]]));
    let end = start + u64::from(u16::from_be_bytes([range[2], range[3]]) % 4096);
    run(async {
        use object_store::ObjectStoreExt as _;
        let mem = std::sync::Arc::new(object_store::memory::InMemory::new());
        let store = crate::attachments::AttachmentStore::new(mem.clone());
        let akey = crate::attachments::AttachmentKey::new(&key, "doc");
        for (path, bytes) in [("good", &object), ("bad", &bad)] {
            mem.put(&path.into(), bytes.clone().into())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let good = store
            .get_bytes(&"good".into(), &akey)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&good[..], plaintext);
        let len = plaintext.len() as u64;
        // an empty range up to the end reads nothing; an empty range past the end, or a
        // non-empty range starting at or past the end, is InvalidRange
        let expected = (start < len || (start == end && start <= len))
            .then(|| plaintext[start.min(len) as usize..end.min(len) as usize].to_vec());
        for path in ["good", "bad"] {
            let got = store.get_range(&path.into(), &akey, start..end).await;
            match (got, path == "bad" && tampered) {
                (Ok(b), _) => assert_eq!(Some(b.to_vec()), expected, "{path} {start}..{end}"),
                (Err(e), false) => {
                    assert_eq!(e.kind(), ErrorKind::InvalidRange, "{e}");
                    assert!(expected.is_none());
                }
                (Err(e), true) => assert!(
                    matches!(
                        e.kind(),
                        ErrorKind::DecryptionFailed
                            | ErrorKind::BadFormat
                            | ErrorKind::InvalidRange
                    ),
                    "{e}"
                ),
            }
        }
        match store.get_bytes(&"bad".into(), &akey).await {
            Ok(b) => assert_eq!(
                &b[..],
                plaintext,
                "tampering never yields another plaintext"
            ),
            Err(e) => {
                assert!(tampered);
                assert!(
                    matches!(e.kind(), ErrorKind::DecryptionFailed | ErrorKind::BadFormat),
                    "{e}"
                );
            }
        }
    });
}

/// Blind index keys: master and index keys from hex and bytes (and the wrapped form through a
/// `KmsBox`): parse ∘ to_hex is the identity, errors are `Config` / `BadFormat`.
pub fn blind_index_key(data: &[u8]) {
    use crate::blind_index::{IndexKey, MasterKey};
    let (selector, rest) = split(data);
    let text = String::from_utf8_lossy(rest);
    match MasterKey::from_hex(&text) {
        Ok(k) => {
            assert_eq!(k.to_hex().as_str(), text.trim().to_ascii_lowercase());
            assert_eq!(MasterKey::from_hex(&k.to_hex()).ok(), Some(k.clone()));
            let i = IndexKey::derive(&k, "users", "email_bidx").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(IndexKey::from_hex(&i.to_hex()).ok(), Some(i));
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::Config),
    }
    match IndexKey::from_bytes(rest) {
        Ok(k) => assert_eq!(&k.expose_secret()[..], rest),
        Err(e) => assert_eq!(e.kind(), ErrorKind::Config),
    }
    let key_id = if selector & 1 != 0 {
        "local/fuzz"
    } else {
        "insecure-test-key"
    };
    let b = KmsBox::new(kms().clone(), KeySpec::new().key_id(key_id));
    match run(MasterKey::resolve(&text, &b, None)) {
        Ok(k) => {
            let wrapped = run(k.wrap(&b, None)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(run(MasterKey::resolve(&wrapped, &b, None)).ok(), Some(k));
        }
        Err(e) => assert!(
            matches!(
                e.kind(),
                ErrorKind::Config
                    | ErrorKind::BadFormat
                    | ErrorKind::DecryptionFailed
                    | ErrorKind::VersionNotActive(_)
                    | ErrorKind::ProviderUnavailable
            ),
            "{e}"
        ),
    }
}

// ---------------------------------------------------------------------------------------------

type Seeds = Vec<(&'static str, String, Vec<u8>)>;

fn add(out: &mut Seeds, target: &'static str, name: &str, bytes: Vec<u8>) {
    out.push((target, name.to_owned(), bytes));
}

/// Seed inputs per target, made with the crate's own encoders and the Ruby vectors
/// (`vectors` is the text of `tests/data/kms_encrypted_lockbox.json`): `(target, name, bytes)`.
pub fn seeds(vectors: &str) -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Seeds = Vec::new();
    let key = data_key();
    let ctx = context();
    let v: serde_json::Value = serde_json::from_str(vectors).unwrap_or_default();
    let rows = v["vector_sets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["rows"].as_array().into_iter().flatten().take(2));
    for (i, row) in rows.enumerate() {
        let cols = &row["columns"];
        for (col, value) in cols.as_object().into_iter().flatten() {
            let Some(value) = value.as_str() else {
                continue;
            };
            if col.starts_with("encrypted_kms_key") {
                add(
                    &mut out,
                    "key_column",
                    &format!("vector{i}-{col}"),
                    value.as_bytes().to_vec(),
                );
            } else if col.ends_with("_ciphertext") && i == 0 {
                add(
                    &mut out,
                    "attribute_cipher",
                    &format!("vector{i}-{col}"),
                    [&[0x80u8][..], value.as_bytes()].concat(),
                );
            }
        }
    }
    // key column: every form
    let short = encoding::mime_encode(b"proj/global/ring/key/cryptoKeyVersions/1");
    for (name, value) in [
        ("v2", "v2:AAFhYmM=".to_owned()),
        ("vault", "vault:v1:YWJj".to_owned()),
        ("aws-legacy", "AQID\nBA==\n".to_owned()),
        (
            "gcp-legacy",
            format!("$gc${short}${}", encoding::mime_encode(b"\x01\x02")),
        ),
        ("gcp-empty", format!("$gc${short}$")),
        ("bare-name", "users".to_owned()),
    ] {
        add(&mut out, "key_column", name, value.into_bytes());
    }
    // attribute cipher: genuine ciphertexts for each option, and tamper inputs
    let nonce = [9u8; NONCE_LEN];
    for selector in [0u8, 1, 2, 3, 4, 0x80 | 1, 0x80 | 3] {
        let ct = cipher::encrypt_with_nonce(
            Backend::default(),
            &key,
            &nonce,
            b"test@example.org",
            options_of(selector),
        )
        .unwrap_or_default();
        let value = if selector & 0x80 != 0 {
            encoding::strict_encode(&ct).into_bytes()
        } else {
            ct
        };
        add(
            &mut out,
            "attribute_cipher",
            &format!("ct-{selector:02x}"),
            [vec![selector], value].concat(),
        );
    }
    add(
        &mut out,
        "attribute_cipher",
        "tamper-native-padded",
        [&[0x43u8][..], &nonce, &[0, 0, 0, 0, 12, 1], b"555-555-5555"].concat(),
    );
    add(
        &mut out,
        "attribute_cipher",
        "tamper-truncate",
        [&[0x40u8][..], &nonce, &[0x80, 20, 0, 0, 0, 0], b"hello"].concat(),
    );
    // codecs: one encoded value per codec
    let jsons: [&[u8]; 3] = [
        br#"{"a":1,"b":"hi"}"#,
        b"[1180591620717411303424,1.3101333033102623e+20]",
        br#""\u003c&""#,
    ];
    let codec_seed = |out: &mut Seeds, sel: u8, name: &str, bytes: &[u8]| {
        add(out, "codecs", name, [&[sel][..], bytes].concat());
    };
    codec_seed(&mut out, 0, "text", "héllo".as_bytes());
    codec_seed(&mut out, 1, "binary", &[0, 255, 7]);
    codec_seed(
        &mut out,
        2,
        "msgpack",
        &MessagePack::<(String, u32, Vec<u8>)>::encode(&("a".into(), 7, vec![1]))
            .map(|z| z.to_vec())
            .unwrap_or_default(),
    );
    codec_seed(&mut out, 3, "boolean", b"t");
    codec_seed(&mut out, 4, "integer", &(-2i64).to_be_bytes());
    codec_seed(&mut out, 5, "float", &10.12345678f64.to_be_bytes());
    codec_seed(&mut out, 6, "decimal", b"-123.4567890123456789");
    for (i, j) in jsons.iter().enumerate() {
        codec_seed(&mut out, 7, &format!("json{i}"), j);
    }
    codec_seed(
        &mut out,
        8,
        "inet",
        &lockbox::Inet::encode(&(
            "2001:db8::1"
                .parse()
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
            64,
        ))
        .map(|z| z.to_vec())
        .unwrap_or_default(),
    );
    codec_seed(&mut out, 9, "date", b"2024-01-02");
    codec_seed(
        &mut out,
        10,
        "datetime",
        b"2024-01-02T04:04:05.123456789+01:00",
    );
    codec_seed(&mut out, 11, "time", b"03:04:05.123456000");
    // providers
    let local = local_provider();
    let dk = key.expose_secret().to_vec();
    add(
        &mut out,
        "providers",
        "test-key-ctx",
        [&[2u8][..], &test_key::encrypt(&dk, Some(&ctx))].concat(),
    );
    add(
        &mut out,
        "providers",
        "test-key",
        [&[0u8][..], &test_key::encrypt(&dk, None)].concat(),
    );
    add(
        &mut out,
        "providers",
        "local-ctx",
        [
            vec![2u8],
            run(local.wrap("local/fuzz", &dk, Some(&ctx))).unwrap_or_default(),
        ]
        .concat(),
    );
    add(
        &mut out,
        "providers",
        "local-tamper",
        [&[3u8][..], &[0, 0, 0, 0, 13, 0x40], &dk].concat(),
    );
    add(
        &mut out,
        "providers",
        "vault-error",
        [
            &[0x80u8][..],
            br#"{"errors":["1 error occurred:\n\t* cipher: message authentication failed\n\n"]}"#,
        ]
        .concat(),
    );
    add(
        &mut out,
        "providers",
        "vault-plaintext",
        [&[0x81u8][..], b"AAECAw=="].concat(),
    );
    add(
        &mut out,
        "providers",
        "gcp-crc",
        [&[0xc0u8][..], b"ciphertext"].concat(),
    );
    // KmsBox
    for selector in [0u8, 1, 2, 3] {
        let key_id = if selector & 1 != 0 {
            "local/fuzz"
        } else {
            "insecure-test-key"
        };
        let b = KmsBox::new(kms().clone(), KeySpec::new().key_id(key_id));
        let c = (selector & 2 != 0).then_some(&ctx);
        let sealed = run(b.seal("small secret", c))
            .map(crate::Sealed::into_string)
            .unwrap_or_default();
        add(
            &mut out,
            "kms_box",
            &format!("sealed-{selector}"),
            [vec![selector], sealed.into_bytes()].concat(),
        );
        let direct = run(b.encrypt(b"small secret", c)).unwrap_or_default();
        add(
            &mut out,
            "kms_box",
            &format!("encrypted-{selector}"),
            [vec![selector], direct.into_bytes()].concat(),
        );
        add(
            &mut out,
            "kms_box",
            &format!("tamper-{selector}"),
            [&[selector | 4][..], &[0, 0, 0, 0, 40, 1], b"small secret"].concat(),
        );
    }
    // kms_rails: a stored map whose key is a test-key ciphertext of the data key
    #[cfg(feature = "kms-rails")]
    {
        use cbc::cipher::block_padding::Pkcs7;
        use cbc::cipher::{BlockModeEncrypt, KeyIvInit};
        let iv = [3u8; 16];
        let blob = cbc::Encryptor::<aes::Aes256>::new(key.expose_secret().into(), (&iv).into())
            .encrypt_padded_vec::<Pkcs7>(b"123-45-6789");
        let wrapped = test_key::encrypt(key.expose_secret(), None);
        let mut map = vec![0x83];
        for (name, value) in [(&b"key"[..], &wrapped[..]), (b"iv", &iv), (b"blob", &blob)] {
            map.push(0xa0 | name.len() as u8);
            map.extend_from_slice(name);
            map.extend_from_slice(&[0xc4, value.len() as u8]);
            map.extend_from_slice(value);
        }
        out.push(("kms_rails", "envelope".into(), [vec![1u8], map].concat()));
        out.push((
            "kms_rails",
            "cbc".into(),
            [vec![0u8], iv.to_vec(), blob].concat(),
        ));
    }
    // attachments
    #[cfg(feature = "attachments")]
    {
        use crate::attachments::format::{self, Header};
        let h = Header::with_salt_and_prefix(1024, [0x5a; 32], [0xa5; 7])
            .unwrap_or_else(|e| panic!("{e}"));
        let pt: Vec<u8> = (0..2100u32).map(|i| (i % 251) as u8).collect();
        let obj =
            format::encrypt_to_vec(Backend::default(), &key, "doc", h, &pt).unwrap_or_default();
        out.push((
            "attachments",
            "object-3-segments".into(),
            [vec![0u8], obj].concat(),
        ));
        let small =
            format::encrypt_to_vec(Backend::default(), &key, "doc", h, b"hi").unwrap_or_default();
        out.push((
            "attachments",
            "object-small".into(),
            [vec![1u8], small].concat(),
        ));
        let mut lens = 64u64.to_be_bytes().to_vec();
        lens.extend_from_slice(&1024u32.to_be_bytes());
        out.push(("attachments", "lengths".into(), [vec![64u8], lens].concat()));
        out.push((
            "attachments",
            "range-tamper".into(),
            [
                &[128u8][..],
                &[0, 0, 0, 0, 60, 1],
                &[0, 10, 8, 0],
                &pt[..1500],
            ]
            .concat(),
        ));
        out.push((
            "attachments",
            "range-untampered".into(),
            [
                &[128u8][..],
                &[0, 0, 0, 0, 0, 0],
                &[3, 250, 0, 200],
                &pt[..1500],
            ]
            .concat(),
        ));
    }
    // blind index keys
    out.push((
        "blind_index_key",
        "hex".into(),
        [
            &[0u8][..],
            b"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        ]
        .concat(),
    ));
    let mk =
        crate::blind_index::MasterKey::from_bytes(&[7u8; 32]).unwrap_or_else(|e| panic!("{e}"));
    for selector in [0u8, 1] {
        let key_id = if selector & 1 != 0 {
            "local/fuzz"
        } else {
            "insecure-test-key"
        };
        let b = KmsBox::new(kms().clone(), KeySpec::new().key_id(key_id));
        let wrapped = run(mk.wrap(&b, None)).unwrap_or_default();
        out.push((
            "blind_index_key",
            format!("wrapped-{selector}"),
            [vec![selector], wrapped.into_bytes()].concat(),
        ));
    }
    out
}
