//! Column types that hold an attribute ciphertext.

/// A ciphertext column's value as the database stores it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum StoredCiphertext<'a> {
    /// A text column (strict base64), or NULL.
    Text(Option<&'a str>),
    /// A binary column, or NULL.
    Bytes(Option<&'a [u8]>),
}

impl std::fmt::Debug for StoredCiphertext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(t) => write!(f, "Text({:?} chars)", t.map(str::len)),
            Self::Bytes(b) => write!(f, "Bytes({:?} bytes)", b.map(<[u8]>::len)),
        }
    }
}

/// A ciphertext column: text (strict base64) or binary (raw bytes), nullable.
pub trait CiphertextColumn {
    /// The value as stored, for writing it back with SQL.
    fn stored(&self) -> StoredCiphertext<'_>;
    /// The raw ciphertext, `None` for NULL. A text column's invalid base64 is reported as
    /// `Some(Err(..))` by [`read`](Self::read).
    fn read(&self) -> Option<crate::Result<std::borrow::Cow<'_, [u8]>>>;
    /// Store a raw ciphertext (`None`: NULL).
    fn write(&mut self, ciphertext: Option<Vec<u8>>);
    /// Whether the column holds an empty value (`""`: Lockbox stores empty strings unencrypted).
    fn is_empty_value(&self) -> bool;
}

impl CiphertextColumn for Option<String> {
    fn stored(&self) -> StoredCiphertext<'_> {
        StoredCiphertext::Text(self.as_deref())
    }
    fn read(&self) -> Option<crate::Result<std::borrow::Cow<'_, [u8]>>> {
        self.as_deref().map(|s| {
            crate::encoding::strict_decode(s)
                .map(std::borrow::Cow::Owned)
                .map_err(|_| {
                    crate::Error::new(
                        crate::ErrorKind::BadFormat,
                        "ciphertext column: invalid base64",
                    )
                })
        })
    }
    fn write(&mut self, ciphertext: Option<Vec<u8>>) {
        *self = ciphertext.map(|c| crate::encoding::strict_encode(&c));
    }
    fn is_empty_value(&self) -> bool {
        self.as_deref() == Some("")
    }
}

impl CiphertextColumn for Option<Vec<u8>> {
    fn stored(&self) -> StoredCiphertext<'_> {
        StoredCiphertext::Bytes(self.as_deref())
    }
    fn read(&self) -> Option<crate::Result<std::borrow::Cow<'_, [u8]>>> {
        self.as_deref().map(|b| Ok(std::borrow::Cow::Borrowed(b)))
    }
    fn write(&mut self, ciphertext: Option<Vec<u8>>) {
        *self = ciphertext;
    }
    fn is_empty_value(&self) -> bool {
        self.as_deref() == Some(&[][..])
    }
}
