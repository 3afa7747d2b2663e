//! Panic policy: a panicking handler fails its attempt, never its thread.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, turning a panic into `Err` with the panic message.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    // The handler's state is not observed after a panic (the attempt is over), so unwind
    // safety holds for everything the engine touches.
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| format!("handler panicked: {}", message(&*payload)))
}

fn message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catches_str_and_string_panics() {
        assert_eq!(catch(|| 5), Ok(5));
        assert_eq!(catch(|| panic!("boom")), Err::<(), _>("handler panicked: boom".into()));
        let n = 3;
        assert_eq!(catch(|| panic!("n = {n}")), Err::<(), _>("handler panicked: n = 3".into()));
        assert_eq!(
            catch(|| std::panic::panic_any(7_u8)),
            Err::<(), _>("handler panicked: (non-string panic payload)".into())
        );
    }
}
