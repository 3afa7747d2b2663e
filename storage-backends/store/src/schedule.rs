//! Recurring schedules as a store keeps them: the store stores and fires them; the engine
//! computes their times and encodes what they insert.

use crate::{Enqueued, JobId, Timestamp};

/// A recurring schedule ([`Store::put_schedule`](crate::Store::put_schedule)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScheduleRecord {
    /// Its name: one schedule per name.
    pub name: String,
    /// How it recurs, as the engine wrote it (for example `every 5m` or a cron expression with
    /// its time zone); opaque to the store.
    pub spec: String,
    /// The job it inserts at each fire, as the engine encodes it; opaque to the store.
    pub template: Vec<u8>,
    /// When it fires next.
    pub next_fire: Timestamp,
    /// The due time of its last fire, if it fired.
    pub last_fire: Option<Timestamp>,
    /// The job its last fire inserted (`None` if that fire found the job's unique key held).
    pub last_job: Option<JobId>,
    /// When it was first put.
    pub created_at: Timestamp,
    /// When it was last put or fired.
    pub updated_at: Timestamp,
}

impl ScheduleRecord {
    /// A schedule `name` recurring as `spec`, inserting `template`, first due at `next_fire`,
    /// put at `now`.
    pub fn new(
        name: impl Into<String>,
        spec: impl Into<String>,
        template: Vec<u8>,
        next_fire: Timestamp,
        now: Timestamp,
    ) -> Self {
        ScheduleRecord {
            name: name.into(),
            spec: spec.into(),
            template,
            next_fire,
            last_fire: None,
            last_job: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// What [`Store::fire`](crate::Store::fire) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FireOutcome {
    /// This call fired the schedule: the job was enqueued (or found its unique key held), and
    /// the schedule's next fire moved.
    Fired(Enqueued),
    /// The schedule is no longer due at that time: another process fired it, or it was
    /// replaced. Nothing was inserted.
    Moved,
    /// No schedule has this name.
    NotFound,
}
