//! Plaintext codecs: how a typed attribute value becomes the bytes that are encrypted.
//!
//! | codec | Rust value | bytes |
//! |---|---|---|
//! | [`Text`] | `String` (set from `&str`) | UTF-8 |
//! | [`Binary`] | `Vec<u8>` (set from `&[u8]`) | raw |
//! | [`MessagePack<T>`] | any `T: Serialize + DeserializeOwned` | MessagePack (rmp-serde, structs as maps) |

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

pub mod lockbox;

/// Converts an attribute's Rust value to and from plaintext bytes.
pub trait Codec {
    /// What readers return.
    type Value;
    /// What setters take (borrowed).
    type Input: ?Sized;
    /// Value → plaintext bytes.
    fn encode(input: &Self::Input) -> Result<Zeroizing<Vec<u8>>>;
    /// Plaintext bytes → value. Errors never contain the bytes.
    fn decode(bytes: &[u8]) -> Result<Self::Value>;
    /// The value of a stored empty string (`""`, which Lockbox leaves unencrypted): the decoded
    /// empty plaintext by default; `None` for types whose empty value is NULL.
    fn empty() -> Result<Option<Self::Value>> {
        Self::decode(&[]).map(Some)
    }
}

/// UTF-8 text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Text;

impl Codec for Text {
    type Value = String;
    type Input = str;
    fn encode(input: &str) -> Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(input.as_bytes().to_vec()))
    }
    fn decode(bytes: &[u8]) -> Result<String> {
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::codec("decrypted value is not valid UTF-8"))
    }
}

/// Raw bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Binary;

impl Codec for Binary {
    type Value = Vec<u8>;
    type Input = [u8];
    fn encode(input: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(input.to_vec()))
    }
    fn decode(bytes: &[u8]) -> Result<Vec<u8>> {
        Ok(bytes.to_vec())
    }
}

/// Any serde type, as MessagePack (structs encoded as maps, so fields can be added later).
#[derive(Debug, Clone, Copy, Default)]
pub struct MessagePack<T>(PhantomData<fn() -> T>);

impl<T: Serialize + DeserializeOwned> Codec for MessagePack<T> {
    type Value = T;
    type Input = T;
    fn encode(input: &T) -> Result<Zeroizing<Vec<u8>>> {
        rmp_serde::to_vec_named(input)
            .map(Zeroizing::new)
            .map_err(|e| {
                Error::codec(format!(
                    "MessagePack encoding failed: {}",
                    redact_serde(&e.to_string())
                ))
            })
    }
    fn decode(bytes: &[u8]) -> Result<T> {
        rmp_serde::from_slice(bytes).map_err(|e| {
            Error::codec(format!(
                "MessagePack decoding failed: {}",
                redact_serde(&e.to_string())
            ))
        })
    }
}

/// serde messages can quote input (`invalid value: string "…"`); keep only the part before any
/// quoted value.
pub(crate) fn redact_serde(message: &str) -> String {
    match message.find(['"', '`', '\'']) {
        Some(i) => format!("{}…", &message[..i]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Address {
        street: String,
        zip: u32,
    }

    #[test]
    fn round_trips() {
        assert_eq!(
            Text::decode(&Text::encode("héllo").unwrap()).unwrap(),
            "héllo"
        );
        assert_eq!(
            Binary::decode(&Binary::encode(&[0, 255]).unwrap()).unwrap(),
            vec![0, 255]
        );
        let a = Address {
            street: "Main".into(),
            zip: 12345,
        };
        let bytes = MessagePack::<Address>::encode(&a).unwrap();
        assert_eq!(MessagePack::<Address>::decode(&bytes).unwrap(), a);
    }

    #[test]
    fn bad_utf8_is_codec_error_without_bytes() {
        let e = Text::decode(&[0xff, 0x41]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Codec);
        assert!(!e.to_string().contains('A'));
    }

    #[test]
    fn serde_errors_do_not_quote_values() {
        let bytes = rmp_serde::to_vec("secret-value").unwrap();
        let e = MessagePack::<u32>::decode(&bytes).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
