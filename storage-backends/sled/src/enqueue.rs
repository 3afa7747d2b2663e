//! Enqueueing, shared by `enqueue` and a schedule's fire: which jobs are duplicates, and the ids
//! of the others, are decided under the write lock before the transaction (which may run more
//! than once), drawing ids only for jobs that are inserted, in insertion order.

use durable_jobs_store::transition;
use durable_jobs_store::{Enqueued, JobId, NewJob, StoreError, Timestamp};

use crate::error::store_error;
use crate::keys;
use crate::store::SledStore;
use crate::tx::{Tx, TxError};

impl SledStore {
    /// What enqueueing `jobs` in order does: a duplicate names the holder of its key (a live
    /// job, one inserted earlier in the same call, or the newest in its window), others get
    /// new ids. The caller holds the write lock and inserts them ([`Tx::insert`]).
    pub(crate) fn plan_enqueue(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, StoreError> {
        let mut out = Vec::with_capacity(jobs.len());
        let mut keys_taken: Vec<(&str, JobId)> = Vec::new();
        for new in jobs {
            if let Some(key) = new.unique_key.as_deref() {
                let in_batch = keys_taken.iter().find(|(k, _)| *k == key).map(|(_, id)| *id);
                let holder = match in_batch.or(self.live_holder(key)?) {
                    Some(id) => Some(id),
                    None => {
                        transition::window_start(new).map(|start| self.window_holder(key, start)).transpose()?.flatten()
                    }
                };
                if let Some(holder) = holder {
                    out.push(Enqueued::Duplicate(holder));
                    continue;
                }
            }
            let id = self.new_id()?;
            if let Some(key) = new.unique_key.as_deref() {
                keys_taken.push((key, id));
            }
            out.push(Enqueued::New(id));
        }
        Ok(out)
    }

    /// The live job holding `key`, read outside a transaction.
    fn live_holder(&self, key: &str) -> Result<Option<JobId>, StoreError> {
        let holder = self.trees().unique.get(key.as_bytes()).map_err(|e| store_error("read unique keys", e))?;
        Ok(holder.and_then(|v| keys::id_from(&v)))
    }

    /// The newest job holding `key` created after `start`, read outside a transaction.
    fn window_holder(&self, key: &str, start: Timestamp) -> Result<Option<JobId>, StoreError> {
        for entry in self.trees().keys.scan_prefix(keys::key_prefix(key)).rev() {
            let (k, created) = entry.map_err(|e| store_error("scan unique keys", e))?;
            if keys::time_from(&created).is_some_and(|c| c > start) {
                return Ok(keys::id_from(&k));
            }
        }
        Ok(None)
    }
}

impl Tx<'_> {
    /// Inserts the jobs [`SledStore::plan_enqueue`] gave ids to.
    pub(crate) fn insert(&self, jobs: &[NewJob], planned: &[Enqueued]) -> Result<(), TxError> {
        for (new, outcome) in jobs.iter().zip(planned) {
            if let Enqueued::New(id) = *outcome {
                self.save(None, &transition::new_record(id, new))?;
                self.raise_max_id(id)?;
            }
        }
        Ok(())
    }
}
