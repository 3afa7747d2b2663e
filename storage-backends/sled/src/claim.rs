//! Claiming: the due jobs and the heads of the ready index of the requested queues and names,
//! without the paused queues.

use std::borrow::Cow;
use std::cmp::Reverse;

use durable_jobs_store::transition;
use durable_jobs_store::{ClaimRequest, Claimed, JobId, Store, StoreError, Timestamp};

use crate::error::store_error;
use crate::keys;
use crate::store::SledStore;

/// A candidate for a claim, in claim order.
type Candidate = (Reverse<i32>, Timestamp, JobId);

impl SledStore {
    /// [`Store::claim`]: the due jobs and the heads of the ready ranges are read under the
    /// write lock, then promoted and claimed in one transaction.
    pub(crate) fn claim_jobs(&self, req: &ClaimRequest) -> Result<Claimed, StoreError> {
        if req.limit == 0 {
            return Ok(Claimed::default());
        }
        self.locked(|s| {
            let req = &*s.unpaused(req);
            let due = s.due_jobs(req)?;
            let mut candidates = s.ready_candidates(req)?;
            for &id in &due {
                if let Some(mut job) = s.get(id)? {
                    if transition::promote(&mut job, req) && transition::is_ready(&job, req) {
                        candidates.push(transition::claim_order(&job));
                    }
                }
            }
            candidates.sort_unstable();
            candidates.dedup();
            let chosen: Vec<JobId> = candidates.into_iter().take(req.limit).map(|(_, _, id)| id).collect();
            let resumed: Vec<JobId> = chosen
                .iter()
                .copied()
                .filter(|id| s.trees().checkpoints.scan_prefix(keys::id(*id)).next().is_some())
                .collect();
            let jobs = s.transact("claim", |tx| {
                for &id in &due {
                    let Some(old) = tx.job(id)? else { continue };
                    let mut job = old.clone();
                    if transition::promote(&mut job, req) {
                        tx.save(Some(&old), &job)?;
                    }
                }
                let mut claimed = Vec::with_capacity(chosen.len());
                for &id in &chosen {
                    let Some(old) = tx.job(id)?.filter(|j| transition::is_ready(j, req)) else { continue };
                    let mut job = old.clone();
                    claimed.push(transition::claim(&mut job, req, resumed.contains(&id)));
                    tx.save(Some(&old), &job)?;
                }
                Ok(claimed)
            })?;
            let next_due = if jobs.len() < req.limit { s.next_due(req)? } else { None };
            Ok(Claimed::new(jobs, next_due))
        })
    }

    /// `req` without the paused queues (the caller holds the write lock).
    fn unpaused<'r>(&self, req: &'r ClaimRequest) -> Cow<'r, ClaimRequest> {
        let paused = self.paused.lock();
        if req.queues.iter().any(|q| paused.contains(q)) {
            Cow::Owned(transition::unpaused(req, &paused))
        } else {
            Cow::Borrowed(req)
        }
    }

    /// Ids of the scheduled and waiting jobs of the requested queues that are due.
    fn due_jobs(&self, req: &ClaimRequest) -> Result<Vec<JobId>, StoreError> {
        let mut ids = Vec::new();
        for queue in dedup(&req.queues) {
            let from = keys::queue_prefix(queue);
            let to = keys::queue_timed_upper(queue, req.now);
            for tree in [&self.trees().due, &self.trees().wake] {
                for entry in tree.range(from.clone()..to.clone()) {
                    let (k, _) = entry.map_err(|e| store_error("scan due jobs", e))?;
                    ids.extend(keys::id_from(&k));
                }
            }
        }
        Ok(ids)
    }

    /// The heads of the ready ranges of every requested queue and name, not excluded.
    fn ready_candidates(&self, req: &ClaimRequest) -> Result<Vec<Candidate>, StoreError> {
        let per_range = req.limit.saturating_add(req.exclude.len());
        let mut found = Vec::new();
        for queue in dedup(&req.queues) {
            for name in dedup(&req.names) {
                for entry in self.trees().ready.scan_prefix(keys::ready_prefix(queue, name)).take(per_range) {
                    let (k, _) = entry.map_err(|e| store_error("scan ready jobs", e))?;
                    let Some(id) = keys::id_from(&k) else { continue };
                    if !req.exclude.contains(&id) {
                        if let Some(job) = self.get(id)? {
                            found.push(transition::claim_order(&job));
                        }
                    }
                }
            }
        }
        Ok(found)
    }

    /// The earliest due time among the scheduled and waiting jobs of the requested queues.
    fn next_due(&self, req: &ClaimRequest) -> Result<Option<Timestamp>, StoreError> {
        let mut next = None;
        for queue in dedup(&req.queues) {
            let prefix = keys::queue_prefix(queue);
            for tree in [&self.trees().due, &self.trees().wake] {
                if let Some(entry) = tree.scan_prefix(&prefix).next() {
                    let (k, _) = entry.map_err(|e| store_error("scan due jobs", e))?;
                    if let Some(at) = keys::queue_timed_at(&k, prefix.len()) {
                        next = Some(next.map_or(at, |n: Timestamp| n.min(at)));
                    }
                }
            }
        }
        Ok(next)
    }
}

fn dedup(items: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = items.iter().map(String::as_str).collect();
    out.sort_unstable();
    out.dedup();
    out
}
