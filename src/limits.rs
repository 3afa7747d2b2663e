//! Limits on how many jobs of a queue or handler name run at once and start per second,
//! held by the store for every process sharing it.

use durable_jobs_store::{Limit, LimitScope};

use crate::{names, Error, Queue};

impl Queue {
    /// Sets the limit of a queue or handler name, replacing the one it had: at most
    /// `max_running` of its jobs running at once (prefetched ones count), at most `per_second`
    /// claimed in each one-second window (windows aligned on whole seconds, as Sidekiq's bucket
    /// limiter: across a window's edge up to twice as many may start within a second), each
    /// counted per [`JobOptions::concurrency_key`](crate::JobOptions::concurrency_key) value if
    /// `by_key`. Every process sharing the store follows it from its next claim. A job held
    /// back stays ready and is not charged an attempt; it is claimed as soon as the limit
    /// allows: at the next window, or when a run of its scope ends (at once in this process,
    /// within the poll interval in another).
    ///
    /// ```
    /// use durable_jobs::{JobContext, JobOptions, Limit, MemoryStore, Queue};
    ///
    /// let queue = Queue::new(MemoryStore::new());
    /// queue.register("sync-tenant", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(()))?;
    /// // The partner API takes 10 calls a second, and 2 at a time per tenant.
    /// queue.set_limit(Limit::queue("partner-api").per_second(10))?;
    /// queue.set_limit(Limit::name("sync-tenant").max_running(2).by_key(true))?;
    /// let options = JobOptions::new().queue("partner-api").concurrency_key("tenant-42");
    /// queue.enqueue("sync-tenant", &(), options)?;
    /// assert_eq!(queue.limits()?.len(), 2);
    /// # Ok::<(), durable_jobs::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a bad queue or handler name, [`Error::InvalidOption`] for a
    /// limit that limits nothing, [`Error::Store`] if the store fails.
    pub fn set_limit(&self, limit: Limit) -> Result<(), Error> {
        check_scope(&limit.scope)?;
        if limit.max_running.is_none() && limit.per_second.is_none() {
            let reason = "set max_running, per_second or both".to_owned();
            return Err(Error::InvalidOption { option: "limit", reason });
        }
        self.inner.store.set_limit(&limit)?;
        self.inner.limits_changed();
        Ok(())
    }

    /// Removes the limit of `scope`; `true` if there was one. Held jobs are claimed at once.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for a bad name, [`Error::Store`] if the store fails.
    pub fn remove_limit(&self, scope: &LimitScope) -> Result<bool, Error> {
        check_scope(scope)?;
        let removed = self.inner.store.remove_limit(scope)?;
        self.inner.limits_changed();
        Ok(removed)
    }

    /// Every limit: queues first, then handler names, each by name.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store fails.
    pub fn limits(&self) -> Result<Vec<Limit>, Error> {
        Ok(self.inner.store.limits()?)
    }
}

fn check_scope(scope: &LimitScope) -> Result<(), Error> {
    match scope {
        LimitScope::Queue(q) => names::validate("queue", q),
        LimitScope::Name(n) => names::validate("job", n),
        // A scope a newer store crate adds: the store decides.
        _ => Ok(()),
    }
}
