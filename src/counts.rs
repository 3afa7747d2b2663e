//! How many jobs are where: per queue and handler name, for dashboards and progress bars.

use durable_jobs_store::{JobStatus, StatusCount};

/// How many jobs are in each state.
///
/// `ready`, `prefetched` and `running` are the work in front of the workers: a progress bar
/// shows `completed` out of `completed + failed + busy()` (plus `scheduled` and `waiting` if
/// they belong to the batch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct JobCounts {
    /// Due later: delayed, or backing off before a retry.
    pub scheduled: u64,
    /// Due and waiting for a worker.
    pub ready: u64,
    /// Claimed by a worker that has not started their handler yet.
    pub prefetched: u64,
    /// Their handler is running.
    pub running: u64,
    /// Suspended workflows.
    pub waiting: u64,
    /// Held back from claiming.
    pub paused: u64,
    /// Finished successfully.
    pub completed: u64,
    /// Finished unsuccessfully (dead letters).
    pub failed: u64,
    /// Stopped on request.
    pub cancelled: u64,
}

impl JobCounts {
    /// Jobs ready, prefetched or running: the work a worker has in front of it now.
    pub fn busy(&self) -> u64 {
        self.ready + self.prefetched + self.running
    }

    /// Jobs that have not finished (every state but completed, failed, cancelled).
    pub fn unfinished(&self) -> u64 {
        self.scheduled + self.busy() + self.waiting + self.paused
    }

    /// Every job.
    pub fn total(&self) -> u64 {
        self.unfinished() + self.completed + self.failed + self.cancelled
    }

    fn add(&mut self, c: &StatusCount) {
        let slot = match c.status {
            JobStatus::Running => {
                let started = c.started.min(c.count);
                self.running += started;
                self.prefetched += c.count - started;
                return;
            }
            JobStatus::Scheduled => &mut self.scheduled,
            JobStatus::Pending => &mut self.ready,
            JobStatus::Waiting => &mut self.waiting,
            JobStatus::Paused => &mut self.paused,
            JobStatus::Completed => &mut self.completed,
            JobStatus::Failed => &mut self.failed,
            _ => &mut self.cancelled,
        };
        *slot += c.count;
    }

    fn sum(&mut self, other: &JobCounts) {
        self.scheduled += other.scheduled;
        self.ready += other.ready;
        self.prefetched += other.prefetched;
        self.running += other.running;
        self.waiting += other.waiting;
        self.paused += other.paused;
        self.completed += other.completed;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
    }
}

/// The counts of [`Queue::counts`](crate::Queue::counts): per queue and handler name, with sums.
///
/// ```
/// use durable_jobs::{JobContext, JobOptions, MemoryStore, Queue};
///
/// let queue = Queue::new(MemoryStore::new());
/// queue.register("mail", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(()))?;
/// queue.enqueue_batch("mail", &[(), (), ()], JobOptions::new())?;
/// let counts = queue.counts()?;
/// assert_eq!(counts.total().ready, 3);
/// assert_eq!(counts.name("mail").busy(), 3);
/// # Ok::<(), durable_jobs::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    rows: Vec<(String, String, JobCounts)>,
}

impl Counts {
    pub(crate) fn from_store(counts: &[StatusCount]) -> Self {
        let mut rows: Vec<(String, String, JobCounts)> = Vec::new();
        for c in counts {
            match rows.last_mut() {
                Some((q, n, row)) if *q == c.queue && *n == c.name => row.add(c),
                _ => {
                    let mut row = JobCounts::default();
                    row.add(c);
                    rows.push((c.queue.clone(), c.name.clone(), row));
                }
            }
        }
        Counts { rows }
    }

    /// Every queue and name, summed.
    pub fn total(&self) -> JobCounts {
        self.sum(|_, _| true)
    }

    /// One queue, every name in it.
    pub fn queue(&self, queue: &str) -> JobCounts {
        self.sum(|q, _| q == queue)
    }

    /// One handler name, in every queue.
    pub fn name(&self, name: &str) -> JobCounts {
        self.sum(|_, n| n == name)
    }

    /// Each queue and name that has jobs, sorted by queue then name.
    pub fn rows(&self) -> impl Iterator<Item = (&str, &str, &JobCounts)> {
        self.rows.iter().map(|(q, n, c)| (q.as_str(), n.as_str(), c))
    }

    fn sum(&self, keep: impl Fn(&str, &str) -> bool) -> JobCounts {
        let mut total = JobCounts::default();
        for (q, n, c) in &self.rows {
            if keep(q, n) {
                total.sum(c);
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_jobs_split_into_prefetched_and_started() {
        let counts = Counts::from_store(&[
            StatusCount::new("default", "a", JobStatus::Scheduled, 2, 0),
            StatusCount::new("default", "a", JobStatus::Running, 5, 3),
            StatusCount::new("default", "b", JobStatus::Pending, 4, 0),
            StatusCount::new("mail", "a", JobStatus::Failed, 1, 0),
        ]);
        let a = counts.name("a");
        assert_eq!((a.scheduled, a.prefetched, a.running, a.failed), (2, 2, 3, 1));
        assert_eq!(counts.queue("default").busy(), 9);
        assert_eq!(counts.total().total(), 12);
        assert_eq!(counts.rows().count(), 3);
    }
}
