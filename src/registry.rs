//! Handlers by name, with their argument and result types erased to JSON bytes.

use std::collections::HashMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::BoxError;
use crate::JobContext;

/// Why an erased handler produced no result.
#[derive(Debug)]
pub(crate) enum HandlerError {
    /// The arguments do not decode into the handler's argument type.
    Decode(serde_json::Error),
    /// The handler's result does not encode as JSON.
    Encode(serde_json::Error),
    /// The handler returned an error.
    Failed(BoxError),
}

/// A handler taking and returning JSON.
pub(crate) type RawHandler = dyn Fn(&JobContext, &[u8]) -> Result<Vec<u8>, HandlerError> + Send + Sync;

/// Wraps a typed handler as a [`RawHandler`].
pub(crate) fn erase<A, R, E, F>(f: F) -> Arc<RawHandler>
where
    A: DeserializeOwned,
    R: Serialize,
    E: Into<BoxError>,
    F: Fn(&JobContext, A) -> Result<R, E> + Send + Sync + 'static,
{
    Arc::new(move |ctx: &JobContext, args: &[u8]| {
        let args: A = serde_json::from_slice(args).map_err(HandlerError::Decode)?;
        let result = f(ctx, args).map_err(|e| HandlerError::Failed(e.into()))?;
        serde_json::to_vec(&result).map_err(HandlerError::Encode)
    })
}

/// The handlers of one queue.
#[derive(Default)]
pub(crate) struct Registry {
    handlers: HashMap<String, Arc<RawHandler>>,
    names: Arc<Vec<String>>,
}

impl Registry {
    /// Adds the handler for `name`; `false` (and nothing changes) if one is registered.
    pub(crate) fn insert(&mut self, name: &str, handler: Arc<RawHandler>) -> bool {
        if self.handlers.contains_key(name) {
            return false;
        }
        self.handlers.insert(name.to_owned(), handler);
        let mut names: Vec<String> = self.handlers.keys().cloned().collect();
        names.sort();
        self.names = Arc::new(names);
        true
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<RawHandler>> {
        self.handlers.get(name).cloned()
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }

    /// Every registered name, sorted: what a worker may claim.
    pub(crate) fn names(&self) -> Arc<Vec<String>> {
        self.names.clone()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("names", &self.names).finish_non_exhaustive()
    }
}
