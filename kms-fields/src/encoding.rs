//! Base64 flavours used by the stored formats.
//!
//! - strict base64 (RFC 4648, padded, no line breaks): Ruby `Base64.strict_encode64`;
//! - MIME base64: Ruby `Base64.encode64` — a newline after every 60 characters and at the end;
//! - lenient decoding: Ruby `Base64.decode64`, used only for legacy values (whitespace ignored,
//!   padding optional).

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};

use crate::error::{Error, Result};

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Strict base64 (padded, no newlines).
pub fn strict_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Strict base64 decoding: any character outside the alphabet, missing padding or a line break
/// is a [`BadFormat`](crate::ErrorKind::BadFormat) error.
pub fn strict_decode(text: &str) -> Result<Vec<u8>> {
    STANDARD
        .decode(text)
        .map_err(|_| Error::bad_format("invalid base64"))
}

/// MIME base64 as Ruby's `Base64.encode64` writes it: lines of 60 characters, each ending in `\n`
/// (the empty input encodes to the empty string).
pub fn mime_encode(bytes: &[u8]) -> String {
    let strict = STANDARD.encode(bytes);
    let mut out = String::with_capacity(strict.len() + strict.len() / 60 + 1);
    for chunk in strict.as_bytes().chunks(60) {
        // chunks of an ASCII string are ASCII
        out.extend(chunk.iter().map(|&b| b as char));
        out.push('\n');
    }
    out
}

/// Lenient decoding for legacy values: ASCII whitespace is skipped and padding is optional.
pub fn lenient_decode(text: &str) -> Result<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    LENIENT
        .decode(compact.as_bytes())
        .map_err(|_| Error::bad_format("invalid base64"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_matches_ruby_encode64() {
        // Ruby: Base64.encode64('{"model_id":"1","model_name":"User"}')
        assert_eq!(
            mime_encode(br#"{"model_id":"1","model_name":"User"}"#),
            "eyJtb2RlbF9pZCI6IjEiLCJtb2RlbF9uYW1lIjoiVXNlciJ9\n"
        );
        assert_eq!(mime_encode(b""), "");
        let long = mime_encode(&[0u8; 50]);
        let lines: Vec<&str> = long.split_terminator('\n').collect();
        assert_eq!(
            lines.iter().map(|l| l.len()).collect::<Vec<_>>(),
            vec![60, 8]
        );
        assert!(long.ends_with('\n'));
    }

    #[test]
    fn strict_rejects_newlines_and_lenient_accepts_them() {
        assert!(strict_decode("aGVs\nbG8=").is_err());
        assert_eq!(lenient_decode("aGVs\nbG8=\n").unwrap(), b"hello");
        assert_eq!(lenient_decode("aGVsbG8").unwrap(), b"hello");
    }
}
