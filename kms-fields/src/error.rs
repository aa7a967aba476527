//! The one error type of kms-fields, with kinds callers can match.
//!
//! Messages name the model, key, key id and version involved — never a plaintext, a data key or
//! a ciphertext.

use std::fmt;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, for matching. `#[non_exhaustive]`: more kinds may come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The KMS (or the attribute cipher) refused to decrypt: wrong key, wrong encryption context,
    /// tampered or truncated ciphertext. The stored value is left untouched.
    DecryptionFailed,
    /// The stored value names a key version that is neither current nor in `previous_versions`.
    /// The message is exactly `Version not active: N`.
    VersionNotActive(u32),
    /// No key id configured (for example `KMS_KEY_ID` unset).
    MissingKeyId,
    /// The key id needs a provider that is not compiled in (cargo feature) or not configured.
    ProviderUnavailable,
    /// The KMS (or the attachment object store) denied the call: missing permission, an
    /// encrypt-only credential asked to decrypt.
    AccessDenied,
    /// The master key exists but cannot be used: disabled, pending deletion, not found.
    KeyUnusable,
    /// A Vault / OpenBao transit key that is not `derived`: the server silently ignores the
    /// encryption context on such a key, so a key column copied to another record would open
    /// there. Refused (before any wrap or unwrap) unless the provider is configured to warn.
    KeyNotDerived,
    /// Any other provider failure (network, throttling, server error). See [`Error::is_retryable`].
    Provider,
    /// A stored value (key column, ciphertext, sealed payload) is malformed.
    BadFormat,
    /// A plaintext could not be encoded or decoded into its Rust type.
    Codec,
    /// Invalid configuration (bad key id, bad local master key, bad option).
    Config,
    /// The encryption context needs the record's id and the record has none yet.
    MissingId,
    /// The blocking facade was called where it cannot block (inside a current-thread runtime).
    Runtime,
    /// A database error, raised by the ORM glue crates.
    Database,
    /// A guarded write lost against a concurrent writer (the row, or an attachment object,
    /// changed underneath).
    Conflict,
    /// An object (attachment) does not exist.
    NotFound,
    /// A byte range outside the object (`start` at or past its size, or `start > end`).
    InvalidRange,
    /// The object store (or a source stream being uploaded) failed: network, server error, disk.
    /// See [`Error::is_retryable`].
    Storage,
}

/// The error type of every kms-fields crate.
pub struct Error {
    kind: ErrorKind,
    message: String,
    location: Option<String>,
    retryable: bool,
    source: Option<BoxError>,
}

/// `Result<T, kms_fields::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message (which must not contain secrets).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            location: None,
            retryable: false,
            source: None,
        }
    }

    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Mark the error as retryable (transient network or server trouble, throttling).
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The message without the source chain.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Record where it happened (model, record id, key or attribute), shown before the message.
    /// The first location given is kept (the innermost is the most precise).
    ///
    /// `VersionNotActive` errors display exactly `Version not active: N`, as kms_encrypted's
    /// do; their location is still available from [`location`](Self::location) and `Debug`.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        if self.location.is_none() {
            self.location = Some(what.to_string());
        }
        self
    }

    /// Where it happened, if recorded (e.g. `User#1 kms_key`).
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    pub(crate) fn decryption_failed() -> Self {
        Self::new(ErrorKind::DecryptionFailed, "Decryption failed")
    }

    pub(crate) fn version_not_active(version: u32) -> Self {
        Self::new(
            ErrorKind::VersionNotActive(version),
            format!("Version not active: {version}"),
        )
    }

    pub(crate) fn bad_format(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadFormat, message)
    }

    pub(crate) fn codec(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Codec, message)
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// Wrap a database error (used by the ORM glue crates).
    pub fn database(source: impl Into<BoxError>) -> Self {
        let source = source.into();
        Self::new(ErrorKind::Database, format!("database error: {source}")).with_source(source)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.location, self.kind) {
            (_, ErrorKind::VersionNotActive(_)) | (None, _) => f.write_str(&self.message),
            (Some(at), _) => write!(f, "{at}: {}", self.message),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(at) = &self.location {
            d.field("location", at);
        }
        if self.retryable {
            d.field("retryable", &true);
        }
        if let Some(source) = &self.source {
            d.field("source", &format_args!("{source}"));
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_not_active_message_is_exact() {
        let e = Error::version_not_active(3);
        assert_eq!(e.to_string(), "Version not active: 3");
        assert_eq!(e.kind(), ErrorKind::VersionNotActive(3));
    }

    #[test]
    fn context_keeps_kind() {
        let e = Error::decryption_failed()
            .context("User#1 kms_key")
            .context("outer");
        assert_eq!(e.kind(), ErrorKind::DecryptionFailed);
        assert_eq!(e.to_string(), "User#1 kms_key: Decryption failed");
        let v = Error::version_not_active(3).context("User#1 kms_key");
        assert_eq!(v.to_string(), "Version not active: 3");
        assert_eq!(v.location(), Some("User#1 kms_key"));
    }
}
