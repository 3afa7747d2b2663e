//! Claiming: the due jobs and the heads of the ready index of the requested queues and names,
//! without the paused queues, and past the jobs that limits hold back.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use durable_jobs_store::transition;
use durable_jobs_store::{
    window_end, window_of, ClaimRequest, Claimed, JobId, JobRecord, Store, StoreError, Timestamp,
};

use crate::error::store_error;
use crate::keys;
use crate::limits::{Gate, Held};
use crate::store::SledStore;

/// A candidate for a claim, in claim order.
type Candidate = (Reverse<i32>, Timestamp, JobId);

impl SledStore {
    /// [`Store::claim`]: the due jobs and the heads of the ready ranges are read under the
    /// write lock, then promoted and claimed in one transaction (with the window counts of the
    /// limits that counted the claims).
    pub(crate) fn claim_jobs(&self, req: &ClaimRequest) -> Result<Claimed, StoreError> {
        if req.limit == 0 {
            return Ok(Claimed::default());
        }
        self.locked(|s| {
            let req = &*s.unpaused(req);
            let due = s.due_jobs(req)?;
            let mut promoted = Vec::new();
            for &id in &due {
                if let Some(mut job) = s.get(id)? {
                    if transition::promote(&mut job, req) && transition::is_ready(&job, req) {
                        promoted.push(job);
                    }
                }
            }
            let gate = s.limits.lock().gate(req);
            let (chosen, rate_held, windows) = match gate {
                None => (s.choose(req, &promoted)?, false, Vec::new()),
                Some(mut gate) => {
                    let (chosen, rate_held) = s.choose_limited(req, promoted, &mut gate)?;
                    (chosen, rate_held, gate.counted())
                }
            };
            let stored_windows = windows
                .iter()
                .map(|((scope, key), (w, n))| Ok((keys::window(scope, key)?, keys::window_value(*w, *n))))
                .collect::<Result<Vec<_>, StoreError>>()?;
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
                for (key, value) in &stored_windows {
                    tx.windows.insert(&key[..], &value[..])?;
                }
                Ok(claimed)
            })?;
            s.limits.lock().set_windows(windows);
            let next_due = if jobs.len() < req.limit {
                let window_end = rate_held.then(|| window_end(window_of(req.now)));
                s.next_due(req)?.into_iter().chain(window_end).min()
            } else {
                None
            };
            Ok(Claimed::new(jobs, next_due))
        })
    }

    /// The jobs a claim that no limit covers takes: the first `req.limit` in claim order of
    /// the heads of the ready ranges and the jobs just `promoted`.
    fn choose(&self, req: &ClaimRequest, promoted: &[JobRecord]) -> Result<Vec<JobId>, StoreError> {
        let mut candidates = self.ready_candidates(req)?;
        candidates.extend(promoted.iter().map(transition::claim_order));
        candidates.sort_unstable();
        candidates.dedup();
        Ok(candidates.into_iter().take(req.limit).map(|(_, _, id)| id).collect())
    }

    /// The jobs a claim covered by limits takes, and whether a full window held one back: every
    /// ready job in claim order (the ready ranges merged with the jobs just `promoted`), each
    /// claimed unless `gate` holds it back, until `req.limit` are. A range whose jobs are all
    /// held back (a limit of the whole scope is full) is left unread.
    fn choose_limited(
        &self,
        req: &ClaimRequest,
        promoted: Vec<JobRecord>,
        gate: &mut Gate,
    ) -> Result<(Vec<JobId>, bool), StoreError> {
        let mut ranges = Vec::new();
        for queue in dedup(&req.queues) {
            for name in dedup(&req.names) {
                let prefix = keys::ready_prefix(queue, name);
                let probe = JobRecord::new(JobId(0), queue, name, Vec::new(), Timestamp(0));
                ranges.push((probe, prefix.len(), self.trees().ready.scan_prefix(prefix)));
            }
        }
        // Min-heap of (claim order, source): a range's next key, or a promoted job.
        let mut heap = BinaryHeap::new();
        let mut promoted: Vec<Option<JobRecord>> = promoted.into_iter().map(Some).collect();
        for (i, job) in promoted.iter().enumerate().filter_map(|(i, j)| Some((i, j.as_ref()?))) {
            heap.push(Reverse((keys::claim_order(job.priority, job.run_at, job.id), ranges.len() + i)));
        }
        for (i, (_, prefix_len, iter)) in ranges.iter_mut().enumerate() {
            push_next(&mut heap, i, *prefix_len, iter)?;
        }
        let (mut chosen, mut rate_held) = (Vec::new(), false);
        while chosen.len() < req.limit {
            let Some(Reverse((order, source))) = heap.pop() else { break };
            let job = match ranges.get_mut(source) {
                Some((probe, prefix_len, iter)) => {
                    let id = keys::id_from(&order).unwrap_or(JobId(0));
                    if req.exclude.contains(&id) {
                        push_next(&mut heap, source, *prefix_len, iter)?;
                        continue;
                    }
                    // This job is visited; the rest of its range is held back as it is.
                    if let Some(rate) = gate.holds_all(probe) {
                        rate_held |= rate;
                        continue;
                    }
                    push_next(&mut heap, source, *prefix_len, iter)?;
                    let Some(job) = self.get(id)? else { continue };
                    job
                }
                None => match promoted.get_mut(source - ranges.len()).and_then(Option::take) {
                    Some(job) => job,
                    None => continue,
                },
            };
            match gate.held(&job) {
                Some(Held::Rate) => rate_held = true,
                Some(Held::Running) => {}
                None => {
                    gate.claim(&job);
                    chosen.push(job.id);
                }
            }
        }
        Ok((chosen, rate_held))
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

/// Pushes the next key of ready range `source` (its claim order, whose last 8 bytes are the id).
fn push_next(
    heap: &mut BinaryHeap<Reverse<([u8; 20], usize)>>,
    source: usize,
    prefix_len: usize,
    iter: &mut sled::Iter,
) -> Result<(), StoreError> {
    if let Some(entry) = iter.next() {
        let (k, _) = entry.map_err(|e| store_error("scan ready jobs", e))?;
        if let Some(order) = k.get(prefix_len..).and_then(|o| <[u8; 20]>::try_from(o).ok()) {
            heap.push(Reverse((order, source)));
        }
    }
    Ok(())
}

fn dedup(items: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = items.iter().map(String::as_str).collect();
    out.sort_unstable();
    out.dedup();
    out
}
