//! Maps SQLite errors into the store crate's `StoreError`.

use durable_jobs_store::{StoreError, StoreErrorKind};
use rusqlite::ErrorCode;

/// The kind of failure a SQLite error means to a caller.
pub(crate) fn kind_of(err: &rusqlite::Error) -> StoreErrorKind {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreErrorKind::Busy,
        Some(ErrorCode::DiskFull) => StoreErrorKind::Full,
        Some(
            ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied
            | ErrorCode::ReadOnly
            | ErrorCode::FileLockingProtocolFailed
            | ErrorCode::OutOfMemory,
        ) => StoreErrorKind::Io,
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreErrorKind::Corrupt,
        Some(ErrorCode::ConstraintViolation | ErrorCode::TooBig) => StoreErrorKind::InvalidInput,
        _ => StoreErrorKind::Other,
    }
}

/// Wraps a SQLite error, saying what the store was doing.
pub(crate) fn store_error(context: &str, err: rusqlite::Error) -> StoreError {
    StoreError::with_source(kind_of(&err), format!("sqlite: {context}: {err}"), err)
}

/// Adds context to SQLite results.
pub(crate) trait Context<T> {
    /// Maps the error with `context` naming the operation.
    fn context(self, context: &str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn context(self, context: &str) -> Result<T, StoreError> {
        self.map_err(|e| store_error(context, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn kinds() {
        assert_eq!(kind_of(&failure(rusqlite::ffi::SQLITE_BUSY)), StoreErrorKind::Busy);
        assert_eq!(kind_of(&failure(rusqlite::ffi::SQLITE_FULL)), StoreErrorKind::Full);
        assert_eq!(kind_of(&failure(rusqlite::ffi::SQLITE_NOTADB)), StoreErrorKind::Corrupt);
        assert_eq!(kind_of(&failure(rusqlite::ffi::SQLITE_IOERR)), StoreErrorKind::Io);
        assert_eq!(kind_of(&rusqlite::Error::QueryReturnedNoRows), StoreErrorKind::Other);
        let e = store_error("claim", failure(rusqlite::ffi::SQLITE_BUSY));
        assert!(e.is_retryable());
        assert!(e.message().starts_with("sqlite: claim: "), "{}", e.message());
    }
}
