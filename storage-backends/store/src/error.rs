//! The one error type every store returns.

use std::error::Error as StdError;
use std::fmt;

/// What went wrong in a store, as far as a caller can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The storage is locked by another writer and the wait timed out. Retry later.
    Busy,
    /// The storage is full (disk or configured size limit). Retry when space returns.
    Full,
    /// An I/O error from the operating system. May be transient.
    Io,
    /// The storage is damaged or is not a database of this kind. Nothing was changed.
    Corrupt,
    /// The database was written by a newer version of this library (or another program).
    IncompatibleSchema,
    /// Another process holds the storage exclusively (for example a sled directory).
    AlreadyOpen,
    /// The request was refused because its input is invalid for this store.
    InvalidInput,
    /// Anything else; the message says what.
    Other,
}

impl StoreErrorKind {
    /// A short lowercase name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreErrorKind::Busy => "busy",
            StoreErrorKind::Full => "storage full",
            StoreErrorKind::Io => "i/o error",
            StoreErrorKind::Corrupt => "corrupt storage",
            StoreErrorKind::IncompatibleSchema => "incompatible schema",
            StoreErrorKind::AlreadyOpen => "already open",
            StoreErrorKind::InvalidInput => "invalid input",
            StoreErrorKind::Other => "storage error",
        }
    }
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from a [`Store`](crate::Store).
///
/// An `Err` never proves that a write did *not* happen (an acknowledgement can be lost after a
/// commit); an `Ok` always proves that it did. Backends map their own errors into this type, so
/// no backend error type appears in a public signature.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl StoreError {
    /// An error of `kind` with a message.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError { kind, message: message.into(), source: None }
    }

    /// An error of `kind` with a message and the underlying cause.
    pub fn with_source(
        kind: StoreErrorKind,
        message: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> Self {
        StoreError { kind, message: message.into(), source: Some(source.into()) }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The human-readable description, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether repeating the same call later may succeed (busy, full, I/O).
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, StoreErrorKind::Busy | StoreErrorKind::Full | StoreErrorKind::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_kinds() {
        assert!(StoreError::new(StoreErrorKind::Busy, "x").is_retryable());
        assert!(StoreError::new(StoreErrorKind::Full, "x").is_retryable());
        assert!(!StoreError::new(StoreErrorKind::Corrupt, "x").is_retryable());
        let e = StoreError::with_source(StoreErrorKind::Io, "write failed", std::io::Error::other("eio"));
        assert_eq!(e.to_string(), "i/o error: write failed");
        assert!(StdError::source(&e).is_some());
    }
}
