//! Maps sled errors into the store crate's `StoreError`.

use durable_jobs_store::{StoreError, StoreErrorKind};
use sled::transaction::TransactionError;

pub(crate) fn store_error(context: &str, err: sled::Error) -> StoreError {
    let kind = match &err {
        sled::Error::Io(e) if e.to_string().contains("could not acquire lock") => StoreErrorKind::AlreadyOpen,
        sled::Error::Io(e) if e.kind() == std::io::ErrorKind::StorageFull => StoreErrorKind::Full,
        sled::Error::Io(_) => StoreErrorKind::Io,
        sled::Error::Corruption { .. } => StoreErrorKind::Corrupt,
        _ => StoreErrorKind::Other,
    };
    StoreError::with_source(kind, format!("sled: {context}: {err}"), err)
}

/// A transaction's failure: our own abort error, or sled's.
pub(crate) fn transaction_error(context: &str, err: TransactionError<StoreError>) -> StoreError {
    match err {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => store_error(context, e),
    }
}
