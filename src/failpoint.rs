//! Named points where a test can make the engine fail (feature `failpoints`, built on the `fail`
//! crate). Without the feature the macro expands to nothing.

/// Every fail point, in the order a job meets them.
///
/// - `after-claim`: the dispatcher has claimed a batch and not yet handed it to a thread.
/// - `after-step-effect`: a step has run (its side effect happened); its checkpoint is not written.
/// - `inside-group-commit`: a batch of writes has committed; no one has been told yet.
/// - `after-checkpoint`: `call` has its checkpoint acknowledged and has not returned yet.
/// - `before-completion-commit`: a batch holding a completion is about to be committed.
/// - `during-reclaim`: the reaper has returned expired jobs to the queue.
pub const FAILPOINTS: &[&str] = &[
    "after-claim",
    "after-step-effect",
    "inside-group-commit",
    "after-checkpoint",
    "before-completion-commit",
    "during-reclaim",
];

/// Marks a fail point; a no-op unless the `failpoints` feature is on and the point is configured
/// (`fail::cfg` / `fail::cfg_callback`).
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name);
    };
}

pub(crate) use failpoint;
