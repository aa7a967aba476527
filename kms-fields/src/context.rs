//! Encryption contexts and their byte-exact encodings (docs/FORMATS.md §4 Encryption context).
//!
//! A context is an ordered map of string keys to values (strings or integers, integers written
//! as decimal strings). Its **canonical bytes** are a JSON object with the keys sorted bytewise,
//! no spaces, every value a string: `{"model_id":"1","model_name":"User"}`. String escaping
//! follows what kms_encrypted produces inside Rails (ActiveSupport's `to_json`): `"`, `\` and
//! control characters are escaped as JSON requires (`\b \f \n \r \t`, else `\u00xx`), and
//! `<`, `>`, `&`, U+2028 and U+2029 become `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029`;
//! every other character is written as UTF-8.
//!
//! Each provider receives the context in its own encoding:
//!
//! | provider | encoding |
//! |---|---|
//! | AWS KMS | the map itself (`EncryptionContext` of the API), values as strings |
//! | Google Cloud KMS | canonical bytes as additional authenticated data |
//! | Vault / OpenBao transit | `base64(canonical bytes)` as `context` |
//! | test key | MIME base64 of the canonical bytes |

use std::fmt;

use crate::encoding;

/// A context value: kms_encrypted accepts strings and integers.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Value {
    Str(String),
    Int(i128),
}

impl Value {
    fn as_string(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
        }
    }
}

/// An encryption context: the record named in every KMS call for its key.
///
/// ```
/// use kms_fields::EncryptionContext;
///
/// let ctx = EncryptionContext::for_model("User", 1);
/// assert_eq!(ctx.canonical_json(), r#"{"model_id":"1","model_name":"User"}"#);
/// assert_eq!(ctx.get("model_id"), Some("1".to_owned()));
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct EncryptionContext {
    entries: Vec<(String, Value)>,
    legacy: bool,
}

impl EncryptionContext {
    /// An empty context (`{}`), which is not the same as no context at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// The default context of a record: `{"model_name": <name>, "model_id": <id>}`.
    ///
    /// An id whose decimal form round-trips as an integer is kept as an integer, so the legacy
    /// (pre-`v1:`) JSON form writes it unquoted as kms_encrypted did; the canonical form is the
    /// same string either way.
    pub fn for_model(model_name: &str, model_id: impl fmt::Display) -> Self {
        let id = model_id.to_string();
        let ctx = Self::new().with("model_name", model_name);
        match id.parse::<i128>() {
            Ok(n) if n.to_string() == id => ctx.with_int("model_id", n),
            _ => ctx.with("model_id", id),
        }
    }

    /// Add or replace a string value (builder style).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(key, value);
        self
    }

    /// Add or replace an integer value; it is sent as its decimal string.
    pub fn with_int(mut self, key: impl Into<String>, value: impl Into<i128>) -> Self {
        self.put(key.into(), Value::Int(value.into()));
        self
    }

    /// Add or replace a string value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.put(key.into(), Value::Str(value.into()));
    }

    fn put(&mut self, key: String, value: Value) {
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else {
            self.entries.push((key, value));
        }
    }

    /// The value of `key` as the string the KMS sees.
    pub fn get(&self, key: &str) -> Option<String> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_string())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the context has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries sorted bytewise by key, values as strings (the AWS `EncryptionContext` map).
    pub fn sorted_pairs(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = self
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), v.as_string()))
            .collect();
        pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        pairs
    }

    /// The canonical bytes (frozen format), as a string.
    pub fn canonical_json(&self) -> String {
        let mut out = String::with_capacity(16 + self.entries.len() * 24);
        out.push('{');
        for (i, (k, v)) in self.sorted_pairs().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_string(&mut out, k);
            out.push(':');
            write_json_string(&mut out, v);
        }
        out.push('}');
        out
    }

    /// Mark this context as a legacy one: kms_encrypted before `v1:` prefixes serialised the
    /// context with `to_json` unsorted and with integers unquoted. Only used to read legacy
    /// key columns.
    pub fn into_legacy(mut self) -> Self {
        self.legacy = true;
        self
    }

    /// Whether [`into_legacy`](Self::into_legacy) was applied.
    pub fn is_legacy(&self) -> bool {
        self.legacy
    }

    /// The JSON bytes a JSON-consuming provider (Vault, Google, test key) receives: the
    /// canonical bytes, or for a legacy context the insertion-ordered `to_json` form.
    pub fn json_bytes(&self) -> Vec<u8> {
        if !self.legacy {
            return self.canonical_json().into_bytes();
        }
        let mut out = String::from("{");
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_string(&mut out, k);
            out.push(':');
            match v {
                Value::Str(s) => write_json_string(&mut out, s),
                Value::Int(n) => out.push_str(&n.to_string()),
            }
        }
        out.push('}');
        out.into_bytes()
    }

    /// Google Cloud KMS additional authenticated data.
    pub fn gcp_aad(&self) -> Vec<u8> {
        self.json_bytes()
    }

    /// Vault / OpenBao transit `context`: strict base64 of the JSON bytes. Exactly these bytes
    /// are what Vault's audit log hashes.
    pub fn vault_context(&self) -> String {
        encoding::strict_encode(&self.json_bytes())
    }

    /// The test key's embedded form: MIME base64 (Ruby `Base64.encode64`) of the JSON bytes.
    pub fn test_key_encoding(&self) -> String {
        encoding::mime_encode(&self.json_bytes())
    }
}

/// Write `s` as a JSON string the way ActiveSupport's `to_json` does.
fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

impl fmt::Debug for EncryptionContext {
    /// Contexts name records, not secrets: they appear in KMS audit logs by design.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (k, v.as_string())))
            .finish()
    }
}

impl fmt::Display for EncryptionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical_json())
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for EncryptionContext {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut ctx = Self::new();
        for (k, v) in iter {
            ctx.insert(k, v);
        }
        ctx
    }
}

impl<K: Into<String>, V: Into<String>, const N: usize> From<[(K, V); N]> for EncryptionContext {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_sorts_and_stringifies() {
        let ctx = EncryptionContext::new().with_int("b", 2).with_int("a", 1);
        assert_eq!(ctx.canonical_json(), r#"{"a":"1","b":"2"}"#);
        assert_eq!(ctx.test_key_encoding(), "eyJhIjoiMSIsImIiOiIyIn0=\n");
    }

    #[test]
    fn escaping_matches_activesupport() {
        let ctx = EncryptionContext::from([("k", "a\"b\\c\n<&>\u{1f}\u{2028}é")]);
        assert_eq!(
            ctx.canonical_json(),
            "{\"k\":\"a\\\"b\\\\c\\n\\u003c\\u0026\\u003e\\u001f\\u2028é\"}"
        );
    }

    #[test]
    fn sorting_is_bytewise() {
        let ctx =
            EncryptionContext::from([("b", "1"), ("B", "2"), ("é", "3"), ("a_b", "4"), ("a", "5")]);
        assert_eq!(
            ctx.canonical_json(),
            r#"{"B":"2","a":"5","a_b":"4","b":"1","é":"3"}"#
        );
    }

    #[test]
    fn legacy_json_keeps_order_and_integers() {
        let ctx = EncryptionContext::new()
            .with("model_name", "User")
            .with_int("model_id", 1);
        assert_eq!(
            ctx.clone().into_legacy().json_bytes(),
            br#"{"model_name":"User","model_id":1}"#
        );
        assert_eq!(ctx.json_bytes(), br#"{"model_id":"1","model_name":"User"}"#);
    }

    #[test]
    fn insert_replaces() {
        let mut ctx = EncryptionContext::for_model("User", 1);
        ctx.insert("model_id", "2");
        assert_eq!(ctx.len(), 2);
        assert_eq!(ctx.get("model_id").as_deref(), Some("2"));
    }
}
