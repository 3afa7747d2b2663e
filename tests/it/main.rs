//! Engine integration tests, one binary, every test on every backend.

// Test helpers are plain functions called by the generated `#[test]`s, so the test-only
// lint exemptions do not reach them.
#![allow(unreachable_pub, clippy::unwrap_used, clippy::missing_panics_doc)]

mod capture;
mod support;

mod bad_input;
mod clock;
mod control;
mod fan_out;
mod faults;
mod hardening;
mod inspection;
mod leases;
mod limits;
mod observability;
mod retries;
mod schedules;
mod scheduling;
mod shutdown;
mod signals;
mod sleep;
mod timing;
mod workflows;
