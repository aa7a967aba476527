//! The stored key column (`encrypted_kms_key`) codec — frozen format (docs/FORMATS.md §2 Key
//! column, §3 Legacy key column values).
//!
//! Written: `"v" + version + ":" + strict_base64(provider_ciphertext)`, identical to
//! kms_encrypted 1.x. Read also, as version 1, the legacy unprefixed forms of kms_encrypted 0.x:
//!
//! - `$gc$<base64 short key id>$<MIME base64 ciphertext>` — Google Cloud KMS; the short key id is
//!   `project/location/keyring/cryptokey[/version]`;
//! - `vault:v<N>:…` — Vault transit, the provider ciphertext is the string itself;
//! - anything else — base64 (with line breaks) of an AWS KMS ciphertext blob.

use std::fmt;

use crate::encoding;
use crate::error::{Error, Result};

/// A decoded key column value.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The key version (1 for legacy values).
    pub version: u32,
    /// The provider ciphertext (AWS blob, GCP bytes, Vault `vault:vN:…` ASCII, test-key bytes).
    pub ciphertext: Vec<u8>,
    /// Set when the value had no `vN:` prefix.
    pub legacy: Option<Legacy>,
}

/// Which legacy (unprefixed) form a value had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Legacy {
    /// `$gc$…`: the key id is stored in the value.
    Google {
        /// `projects/P/locations/L/keyRings/R/cryptoKeys/K` restored from the value.
        key_id: String,
    },
    /// Raw `vault:…`.
    Vault,
    /// Base64 of an AWS blob.
    Aws,
}

impl StoredKey {
    /// A current-format value.
    pub fn new(version: u32, ciphertext: Vec<u8>) -> Self {
        Self {
            version,
            ciphertext,
            legacy: None,
        }
    }

    /// Parse a key column value. Never panics; malformed input is a `BadFormat` error.
    pub fn parse(value: &str) -> Result<Self> {
        if let Some((version, rest)) = split_version(value) {
            let version = version
                .parse::<u32>()
                .map_err(|_| Error::bad_format("key column: version number out of range"))?;
            let ciphertext = encoding::strict_decode(rest)
                .or_else(|_| encoding::lenient_decode(rest))
                .map_err(|_| Error::bad_format("key column: invalid base64 after the version"))?;
            if ciphertext.is_empty() {
                return Err(Error::bad_format("key column: empty ciphertext"));
            }
            return Ok(Self::new(version, ciphertext));
        }
        if let Some(rest) = value.strip_prefix("$gc$") {
            let (short, ct) = rest
                .split_once('$')
                .ok_or_else(|| Error::bad_format("key column: malformed legacy Google value"))?;
            let short = encoding::lenient_decode(short)?;
            let short = String::from_utf8(short)
                .map_err(|_| Error::bad_format("key column: malformed legacy Google key id"))?;
            let parts: Vec<&str> = short.split('/').collect();
            if parts.len() < 4 || parts[..4].iter().any(|p| p.is_empty()) {
                return Err(Error::bad_format(
                    "key column: malformed legacy Google key id",
                ));
            }
            let key_id = format!(
                "projects/{}/locations/{}/keyRings/{}/cryptoKeys/{}",
                parts[0], parts[1], parts[2], parts[3]
            );
            let ciphertext = encoding::lenient_decode(ct)?;
            if ciphertext.is_empty() {
                return Err(Error::bad_format("key column: empty ciphertext"));
            }
            return Ok(Self {
                version: 1,
                ciphertext,
                legacy: Some(Legacy::Google { key_id }),
            });
        }
        if value.starts_with("vault:") {
            return Ok(Self {
                version: 1,
                ciphertext: value.as_bytes().to_vec(),
                legacy: Some(Legacy::Vault),
            });
        }
        let ciphertext = encoding::lenient_decode(value)
            .map_err(|_| Error::bad_format("key column: not a vN: value and not legacy base64"))?;
        if ciphertext.is_empty() {
            return Err(Error::bad_format("key column: empty value"));
        }
        Ok(Self {
            version: 1,
            ciphertext,
            legacy: Some(Legacy::Aws),
        })
    }

    /// The stored text: `v<version>:<strict base64>`. For every value [`parse`](Self::parse)
    /// accepts, `parse(encode())` gives the same version and ciphertext (legacy values are
    /// written in the current format); an empty ciphertext, which `parse` never returns,
    /// encodes to `v<version>:`, which `parse` rejects.
    pub fn encode(&self) -> String {
        format!(
            "v{}:{}",
            self.version,
            encoding::strict_encode(&self.ciphertext)
        )
    }

    /// The version prefix of a stored value, without decoding the rest (`None` for legacy).
    pub fn version_of(value: &str) -> Option<u32> {
        split_version(value).and_then(|(v, _)| v.parse().ok())
    }
}

/// `v123:rest` → `("123", "rest")`, as kms_encrypted's `/\Av(\d+):/`.
fn split_version(value: &str) -> Option<(&str, &str)> {
    let rest = value.strip_prefix('v')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || rest.as_bytes().get(digits) != Some(&b':') {
        return None;
    }
    Some((&rest[..digits], &rest[digits + 1..]))
}

impl fmt::Debug for StoredKey {
    /// Shows the version and sizes only: a test-key ciphertext contains its data key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("version", &self.version)
            .field("ciphertext_len", &self.ciphertext.len())
            .field("legacy", &self.legacy)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn round_trip_current_format() {
        let k = StoredKey::new(2, b"\x00\x01abc".to_vec());
        assert_eq!(k.encode(), "v2:AAFhYmM=");
        assert_eq!(StoredKey::parse("v2:AAFhYmM=").unwrap(), k);
        assert_eq!(StoredKey::version_of("v12:xx"), Some(12));
        assert_eq!(StoredKey::version_of("vault:v1:xx"), None);
    }

    #[test]
    fn legacy_forms() {
        let v = StoredKey::parse("vault:v1:abc").unwrap();
        assert_eq!(
            (v.version, v.legacy, v.ciphertext),
            (1, Some(Legacy::Vault), b"vault:v1:abc".to_vec())
        );

        let short = encoding::mime_encode(b"proj/global/ring/key/cryptoKeyVersions/1");
        let gc = format!("$gc${short}${}", encoding::mime_encode(b"\x01\x02"));
        let g = StoredKey::parse(&gc).unwrap();
        assert_eq!(
            g.legacy,
            Some(Legacy::Google {
                key_id: "projects/proj/locations/global/keyRings/ring/cryptoKeys/key".into()
            })
        );
        assert_eq!(g.ciphertext, b"\x01\x02");

        let a = StoredKey::parse("AQID\nBA==\n").unwrap();
        assert_eq!(
            (a.ciphertext, a.legacy),
            (vec![1, 2, 3, 4], Some(Legacy::Aws))
        );
    }

    #[test]
    fn every_parsed_value_encodes_to_a_value_that_parses_back() {
        let short = encoding::mime_encode(b"proj/global/ring/key");
        for ok in [
            "v2:AAFhYmM=".to_owned(),
            "v007:AAFhYmM".to_owned(),
            "vault:v1:abc".to_owned(),
            "AQID\nBA==\n".to_owned(),
            format!("$gc${short}$AQI="),
        ] {
            let k = StoredKey::parse(&ok).unwrap();
            let again = StoredKey::parse(&k.encode()).unwrap();
            assert_eq!(
                (again.version, &again.ciphertext, again.legacy),
                (k.version, &k.ciphertext, None),
                "{ok:?}"
            );
        }
    }

    #[test]
    fn malformed_values_are_errors() {
        for bad in [
            "",
            "v1:",
            "v1:***",
            "v99999999999:AA==",
            "$gc$",
            "$gc$YQ==$AA==",
            "%%%",
            // a well-formed Google key id with an empty ciphertext (the other forms reject it)
            "$gc$cC9sL3Ivaw==$",
            "$gc$cC9sL3Ivaw==$\n",
        ] {
            let e = StoredKey::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::BadFormat, "{bad:?}");
        }
    }
}
