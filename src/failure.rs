//! How a handler's error decides what happens next.

use std::time::Duration;

use crate::error::{chain, BoxError};
use crate::Error;

/// Why an attempt (or a step) did not succeed.
pub(crate) enum Failure {
    /// Do not try again.
    Permanent(String),
    /// Try again (after `after`, or the backoff delay) if attempts remain.
    Retry { message: String, after: Option<Duration> },
}

impl Failure {
    /// Classifies an error returned by a handler: a [`durable_jobs::Error`](Error) says
    /// whether it is permanent or has a retry delay; any other error is retryable.
    pub(crate) fn of(error: &BoxError) -> Failure {
        let message = chain(&**error);
        match error.downcast_ref::<Error>() {
            Some(e) if e.is_permanent() => Failure::Permanent(message),
            Some(Error::RetryAfter { delay, .. }) => Failure::Retry { message, after: Some(*delay) },
            _ => Failure::Retry { message, after: None },
        }
    }

    pub(crate) fn is_permanent(&self) -> bool {
        matches!(self, Failure::Permanent(_))
    }

    pub(crate) fn message(&self) -> &str {
        match self {
            Failure::Permanent(m) | Failure::Retry { message: m, .. } => m,
        }
    }

    pub(crate) fn into_message(self) -> String {
        match self {
            Failure::Permanent(m) | Failure::Retry { message: m, .. } => m,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_handler_errors() {
        let plain: BoxError = "network down".into();
        assert!(matches!(Failure::of(&plain), Failure::Retry { after: None, .. }));
        let permanent: BoxError = Error::permanent("card declined").into();
        let f = Failure::of(&permanent);
        assert!(f.is_permanent());
        assert_eq!(f.message(), "card declined");
        let later: BoxError = Error::retry_after(Duration::from_secs(3), "rate limited").into();
        assert!(matches!(Failure::of(&later), Failure::Retry { after: Some(d), .. } if d == Duration::from_secs(3)));
    }
}
