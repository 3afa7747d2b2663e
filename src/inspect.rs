//! What users see of a job.

use std::time::SystemTime;

use durable_jobs_store::{JobId, JobRecord, JobStatus, Timestamp};

/// A snapshot of one job, from [`Queue::job`](crate::Queue::job), [`Queue::list`](crate::Queue::list)
/// or [`Queue::wait`](crate::Queue::wait).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobInfo {
    /// The job.
    pub id: JobId,
    /// Its handler name.
    pub name: String,
    /// Its queue.
    pub queue: String,
    /// Its status.
    pub status: JobStatus,
    /// Attempts started so far (0 before the first).
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Its priority.
    pub priority: i32,
    /// Its unique key, if any.
    pub unique_key: Option<String>,
    /// The arguments as JSON text, as enqueued (kept after failures).
    pub args: String,
    /// The result as JSON text, once completed.
    pub result: Option<String>,
    /// The last failure, with its causes.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: SystemTime,
    /// When it is (or was) due to run.
    pub run_at: SystemTime,
    /// When its latest attempt started.
    pub started_at: Option<SystemTime>,
    /// When it finished.
    pub finished_at: Option<SystemTime>,
}

impl From<JobRecord> for JobInfo {
    fn from(r: JobRecord) -> Self {
        let text = |bytes: Vec<u8>| {
            String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        };
        JobInfo {
            id: r.id,
            name: r.name,
            queue: r.queue,
            status: r.status,
            attempt: r.attempt,
            max_attempts: r.max_attempts,
            priority: r.priority,
            unique_key: r.unique_key,
            args: text(r.args),
            result: r.result.map(text),
            last_error: r.last_error,
            created_at: r.created_at.to_system_time(),
            run_at: r.run_at.to_system_time(),
            started_at: r.started_at.map(Timestamp::to_system_time),
            finished_at: r.finished_at.map(Timestamp::to_system_time),
        }
    }
}
