//! The naming rule for jobs, steps and queues: `[A-Za-z][A-Za-z0-9_.:-]{0,254}` (so module
//! paths such as `billing::charge` are names).

use crate::Error;

/// The longest valid name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Checks `name` against the rule; `what` says what kind of name it is in the error.
pub(crate) fn validate(what: &'static str, name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("it is longer than 255 bytes")
    } else if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        Some("it must start with an ASCII letter")
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')) {
        Some("only ASCII letters, digits, '_', '.', ':' and '-' are allowed")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidName { what, name: shorten(name), reason }),
    }
}

/// At most 64 characters of `name`, for error messages.
fn shorten(name: &str) -> String {
    match name.char_indices().nth(64) {
        Some((cut, _)) => format!("{}...", &name[..cut]),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for ok in ["a", "process-order", "Mail.send_v2", "billing::charge", &format!("a{}", "b".repeat(254))] {
            assert!(validate("job", ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn rejects_hostile_names() {
        let long = "a".repeat(10_000);
        for bad in ["", "1abc", "-x", "x'); DROP TABLE jobs;--", "a b", "nul\0", "\u{202e}rtl", "é", &long] {
            let err = validate("job", bad).unwrap_err();
            assert!(matches!(err, Error::InvalidName { what: "job", .. }), "{bad:?}: {err}");
            assert!(err.to_string().len() < 200, "error message stays short");
        }
    }
}
