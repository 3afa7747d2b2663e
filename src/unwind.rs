//! Panic policy: a panicking handler fails its attempt, never its thread; a panic in the
//! engine's own threads fails their pool (see `worker::supervise`), never silently.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, turning a panic into `Err` with the panic message.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    // State touched by a panicking closure is not observed afterwards (the attempt, or the
    // thread, is over), so unwind safety holds for everything the engine touches.
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| message(&*payload).to_owned())
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
        assert_eq!(catch(|| panic!("boom")), Err::<(), _>("boom".into()));
        let n = 3;
        assert_eq!(catch(|| panic!("n = {n}")), Err::<(), _>("n = 3".into()));
        assert_eq!(catch(|| std::panic::panic_any(7_u8)), Err::<(), _>("(non-string panic payload)".into()));
    }
}
