//! `SledStore`: jobs, indexes and checkpoints as sled trees, written in multi-tree
//! transactions and acknowledged after a shared flush.

use std::fmt;
use std::path::{Path, PathBuf};

use durable_jobs_store::{
    transition, Checkpoint, ClaimRequest, ClaimedJob, Enqueued, JobFilter, JobId, JobRecord, NewJob, Reclaimed,
    StatusCount, StatusCounter, Store, StoreError, Timestamp, Write, WriteOutcome,
};
use parking_lot::Mutex;
use sled::transaction::Transactional;
use sled::Tree;

use crate::error::{store_error, transaction_error};
use crate::flush::GroupFlush;
use crate::tx::{Tx, TxError, MAX_ID_KEY};
use crate::{codec, keys, open, SledOptions};

/// A [`Store`] in a sled 0.34 directory.
///
/// One process at a time may open a directory. Writes are serialized by one lock (like
/// SQLite's single writer), applied as one transaction over all trees, and acknowledged after
/// `flush()`; writers that commit during a flush share the next one (group commit). See the
/// crate docs for what survives a crash.
///
/// ```
/// use durable_jobs_sled::SledStore;
/// use durable_jobs_store::{JobFilter, Store};
///
/// let dir = tempfile::tempdir()?;
/// let store = SledStore::open(dir.path().join("jobs"))?;
/// assert!(store.list(&JobFilter::default())?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    jobs: Tree,
    claim: Tree,
    lease: Tree,
    wake: Tree,
    unique: Tree,
    checkpoints: Tree,
    meta: Tree,
    write_lock: Mutex<()>,
    flush: GroupFlush,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (creating if needed) the database directory `path` with default [`SledOptions`].
    ///
    /// # Errors
    ///
    /// [`AlreadyOpen`](durable_jobs_store::StoreErrorKind::AlreadyOpen) if another process (or
    /// another `SledStore`) has it open; [`Corrupt`](durable_jobs_store::StoreErrorKind::Corrupt)
    /// if it is not a durable-jobs sled database or is damaged (it is then left untouched);
    /// [`Io`](durable_jobs_store::StoreErrorKind::Io) if it cannot be read or created.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        SledStore::open_with(path, SledOptions::default())
    }

    /// Opens (creating if needed) the database directory `path` with `options`.
    ///
    /// # Errors
    ///
    /// As [`SledStore::open`].
    pub fn open_with(path: impl AsRef<Path>, options: SledOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = open::open(&path, &options)?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| store_error("open tree", e));
        Ok(SledStore {
            jobs: tree("jobs")?,
            claim: tree("claim")?,
            lease: tree("lease")?,
            wake: tree("wake")?,
            unique: tree("unique")?,
            checkpoints: tree("checkpoints")?,
            meta: tree("meta")?,
            db,
            path,
            write_lock: Mutex::new(()),
            flush: GroupFlush::default(),
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` as one transaction over every tree while holding the write lock, then waits
    /// until a flush has made it durable. `f` may run more than once (sled retries conflicts).
    fn write<T>(&self, what: &str, f: impl Fn(&Tx<'_>) -> Result<T, TxError>) -> Result<T, StoreError> {
        let (out, seq) = {
            let _writer = self.write_lock.lock();
            (self.transact(what, f)?, self.flush.committed())
        };
        self.flush.wait_durable(&self.db, seq)?;
        Ok(out)
    }

    /// One transaction over every tree; the caller holds the write lock.
    fn transact<T>(&self, what: &str, f: impl Fn(&Tx<'_>) -> Result<T, TxError>) -> Result<T, StoreError> {
        let trees = (&self.jobs, &self.claim, &self.lease, &self.wake, &self.unique, &self.checkpoints, &self.meta);
        trees
            .transaction(|(jobs, claim, lease, wake, unique, checkpoints, meta)| {
                f(&Tx { jobs, claim, lease, wake, unique, checkpoints, meta })
            })
            .map_err(|e| transaction_error(what, e))
    }

    /// Ids and sort keys of up to `limit` ready jobs per queue, best first across queues.
    fn candidates(&self, req: &ClaimRequest) -> Result<Vec<JobId>, StoreError> {
        let mut found: Vec<(Vec<u8>, JobId)> = Vec::new();
        for queue in &req.queues {
            let prefix = keys::claim_prefix(queue);
            let mut taken = 0;
            for entry in self.claim.scan_prefix(&prefix) {
                if taken == req.limit {
                    break;
                }
                let (key, name) = entry.map_err(|e| store_error("scan claim index", e))?;
                let ready = keys::claim_run_at(&key, prefix.len()).is_some_and(|at| at <= req.now);
                if ready && req.names.iter().any(|n| n.as_bytes() == &*name) {
                    if let Some(id) = keys::id_from(&key) {
                        // Without the queue prefix the key sorts by priority, run time, id.
                        found.push((key[prefix.len()..].to_vec(), id));
                        taken += 1;
                    }
                }
            }
        }
        found.sort();
        Ok(found.into_iter().take(req.limit).map(|(_, id)| id).collect())
    }
}

impl Store for SledStore {
    fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, StoreError> {
        // Ids are taken outside the transaction, which may run more than once; sled never
        // hands out an id twice (a crash may skip some).
        let ids = jobs
            .iter()
            .map(|_| self.db.generate_id().map(|n| JobId(n.cast_signed().saturating_add(1))))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| store_error("generate id", e))?;
        self.write("enqueue", |tx| {
            let mut out = Vec::with_capacity(jobs.len());
            for (new, &id) in jobs.iter().zip(&ids) {
                if let Some(holder) = new.unique_key.as_deref().map(|k| tx.live_holder(k)).transpose()?.flatten() {
                    out.push(Enqueued::Duplicate(holder));
                    continue;
                }
                tx.save(None, &transition::new_record(id, new))?;
                tx.raise_max_id(id)?;
                out.push(Enqueued::New(id));
            }
            Ok(out)
        })
    }

    fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError> {
        if req.limit == 0 {
            return Ok(Vec::new());
        }
        // Scanned outside the transaction (sled transactions cannot scan) but under the write
        // lock, so nothing changes between the scan and the claim.
        let writer = self.write_lock.lock();
        let ids = self.candidates(req)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Checkpoints cannot change under the write lock, so they are looked up outside the
        // transaction (which cannot scan).
        let resumed: Vec<JobId> =
            ids.iter().copied().filter(|id| self.checkpoints.scan_prefix(keys::id(*id)).next().is_some()).collect();
        let claimed = self.transact("claim", |tx| {
            let mut claimed = Vec::with_capacity(ids.len());
            for &id in &ids {
                let Some(old) = tx.job(id)?.filter(|j| transition::is_ready(j, req)) else { continue };
                let mut job = old.clone();
                claimed.push(transition::claim(&mut job, req, resumed.contains(&id)));
                tx.save(Some(&old), &job)?;
            }
            Ok(claimed)
        })?;
        let seq = self.flush.committed();
        drop(writer);
        self.flush.wait_durable(&self.db, seq)?;
        Ok(claimed)
    }

    fn commit(&self, worker: &str, now: Timestamp, writes: &[Write]) -> Result<Vec<WriteOutcome>, StoreError> {
        self.write("commit", |tx| {
            let mut out = Vec::with_capacity(writes.len());
            for write in writes {
                let Some(old) = tx.fenced(write.job(), worker)? else {
                    out.push(WriteOutcome::LeaseLost);
                    continue;
                };
                let mut job = old.clone();
                transition::apply(&mut job, write, now);
                tx.save(Some(&old), &job)?;
                if let Write::Checkpoint { job, checkpoint } = write {
                    tx.put_checkpoint(*job, checkpoint)?;
                }
                out.push(WriteOutcome::Applied);
            }
            Ok(out)
        })
    }

    fn renew(&self, worker: &str, jobs: &[JobId], lease_until: Timestamp) -> Result<Vec<JobId>, StoreError> {
        self.write("renew", |tx| {
            let mut lost = Vec::new();
            for &id in jobs {
                match tx.fenced(id, worker)? {
                    Some(old) => {
                        let mut job = old.clone();
                        job.lease_until = Some(lease_until);
                        tx.save(Some(&old), &job)?;
                    }
                    None => lost.push(id),
                }
            }
            Ok(lost)
        })
    }

    fn release(&self, worker: &str, jobs: &[JobId], now: Timestamp) -> Result<usize, StoreError> {
        self.write("release", |tx| {
            let mut released = 0;
            for &id in jobs {
                if let Some(old) = tx.fenced(id, worker)? {
                    let mut job = old.clone();
                    transition::release(&mut job, now);
                    tx.save(Some(&old), &job)?;
                    released += 1;
                }
            }
            Ok(released)
        })
    }

    fn reclaim_expired(&self, now: Timestamp) -> Result<Reclaimed, StoreError> {
        let expired = timed_ids(&self.lease, Timestamp(now.0.saturating_sub(1)))?;
        if expired.is_empty() {
            return Ok(Reclaimed::default());
        }
        self.write("reclaim expired leases", |tx| {
            let mut out = Reclaimed::default();
            for &id in &expired {
                let Some(old) = tx.job(id)?.filter(|j| transition::is_expired(j, now)) else { continue };
                let mut job = old.clone();
                if transition::reclaim(&mut job, now) {
                    out.failed.push(id);
                } else {
                    out.requeued.push(id);
                }
                tx.save(Some(&old), &job)?;
            }
            Ok(out)
        })
    }

    fn wake_due(&self, now: Timestamp) -> Result<usize, StoreError> {
        let due = timed_ids(&self.wake, now)?;
        if due.is_empty() {
            return Ok(0);
        }
        self.write("wake due jobs", |tx| {
            let mut woken = 0;
            for &id in &due {
                let Some(old) = tx.job(id)?.filter(|j| transition::is_due(j, now)) else { continue };
                let mut job = old.clone();
                transition::wake(&mut job, now);
                tx.save(Some(&old), &job)?;
                woken += 1;
            }
            Ok(woken)
        })
    }

    fn cancel(&self, job: JobId, now: Timestamp) -> Result<bool, StoreError> {
        self.write("cancel", |tx| {
            let Some(old) = tx.job(job)?.filter(transition::is_cancellable) else { return Ok(false) };
            let mut record = old.clone();
            transition::cancel(&mut record, now);
            tx.save(Some(&old), &record)?;
            Ok(true)
        })
    }

    fn requeue(&self, job: JobId, now: Timestamp) -> Result<bool, StoreError> {
        self.write("requeue", |tx| {
            let Some(old) = tx.job(job)?.filter(transition::is_requeueable) else { return Ok(false) };
            if let Some(key) = &old.unique_key {
                if tx.live_holder(key)?.is_some_and(|holder| holder != job) {
                    return Ok(false);
                }
            }
            let mut record = old.clone();
            transition::requeue(&mut record, now);
            tx.save(Some(&old), &record)?;
            Ok(true)
        })
    }

    fn checkpoints(&self, job: JobId) -> Result<Vec<Checkpoint>, StoreError> {
        self.checkpoints
            .scan_prefix(keys::id(job))
            .map(|entry| {
                let (key, value) = entry.map_err(|e| store_error("read checkpoints", e))?;
                let index = key.get(8..12).and_then(|b| b.try_into().ok()).map_or(0, u32::from_be_bytes);
                codec::decode_checkpoint(index, &value)
            })
            .collect()
    }

    fn get(&self, job: JobId) -> Result<Option<JobRecord>, StoreError> {
        match self.jobs.get(keys::id(job)).map_err(|e| store_error("get job", e))? {
            Some(bytes) => codec::decode_job(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let mut out = Vec::new();
        let mut skipped = 0;
        for job in decode_all(self.jobs.iter()) {
            if out.len() == filter.limit {
                break;
            }
            let job = job?;
            if !filter.matches(&job) {
                continue;
            }
            if skipped < filter.offset {
                skipped += 1;
                continue;
            }
            out.push(job);
        }
        Ok(out)
    }

    fn counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        // Streamed: one record decoded at a time, whatever the table's size.
        let mut counter = StatusCounter::default();
        for job in decode_all(self.jobs.iter()) {
            counter.add(&job?);
        }
        Ok(counter.finish())
    }
}

impl Drop for SledStore {
    /// Flushes, and records the highest job id beside the database so that a later open can
    /// tell a database that lost acknowledged data from a healthy one.
    fn drop(&mut self) {
        let _writer = self.write_lock.lock();
        if self.db.flush().is_ok() {
            if let Ok(Some(max)) = self.meta.get(MAX_ID_KEY) {
                open::write_mark(&self.path, &max);
            }
        }
    }
}

fn decode_all(
    iter: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
) -> impl Iterator<Item = Result<JobRecord, StoreError>> {
    iter.map(|entry| entry.map_err(|e| store_error("scan jobs", e)).and_then(|(_, v)| codec::decode_job(&v)))
}

/// The ids in a time index with a time at or before `at`.
fn timed_ids(tree: &Tree, at: Timestamp) -> Result<Vec<JobId>, StoreError> {
    tree.range(..keys::timed_upper(at))
        .map(|entry| entry.map(|(k, _)| keys::id_from(&k)).map_err(|e| store_error("scan time index", e)))
        .filter_map(Result::transpose)
        .collect()
}
