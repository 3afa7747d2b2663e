//! Limits on claims, kept in memory as paused queues are (one process opens a database): loaded
//! at open, changed with the `limits` tree under the write lock. A claim that no limit covers
//! reads nothing more than before.
//!
//! With limits, nothing scans records to count: the `Running` jobs of each (scope, key) of a
//! limit with `max_running` are counted in memory, recounted from the lease index (which holds
//! exactly the running jobs) when limits change and kept up by every transaction that moves a
//! job into or out of `Running` (see `Tx::save`); the window counts are stored in the `windows`
//! tree by the claim that counts them and mirrored here.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use durable_jobs_store::{
    window_of, ClaimRequest, JobRecord, JobStatus, Limit, LimitScope, Store, StoreError, StoreErrorKind,
};

use crate::error::store_error;
use crate::store::SledStore;
use crate::{codec, keys};

/// A limit's scope and the key it counts a job under.
type Counted = (LimitScope, String);

/// Jobs a transaction moved into (+1) or out of (-1) `Running`, while running counts are kept.
pub(crate) type RunningLog = RefCell<Vec<(JobRecord, i32)>>;

/// The limits of a store and what they count.
#[derive(Debug, Default)]
pub(crate) struct Limits {
    by_scope: BTreeMap<LimitScope, Limit>,
    /// Running jobs per (scope, key), for the limits with `max_running` (absent: none).
    running: HashMap<Counted, u32>,
    /// (Scope, key) → (window, claims counted in it), as the `windows` tree holds them.
    windows: HashMap<Counted, (i64, u32)>,
}

/// Why a limit holds a ready job back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// Its scope runs as many jobs as it may.
    Running,
    /// Its scope's window is full.
    Rate,
}

/// The limits covering one claim, with their counts as the claim goes.
#[derive(Debug)]
pub(crate) struct Gate {
    limits: Vec<Limit>,
    running: HashMap<Counted, u32>,
    windows: HashMap<Counted, (i64, u32)>,
    window: i64,
    /// The window counts this claim changed.
    counted: BTreeSet<Counted>,
}

impl Limits {
    /// Whether transactions must log the jobs they move into or out of `Running`.
    pub(crate) fn counts_running(&self) -> bool {
        self.by_scope.values().any(|l| l.max_running.is_some())
    }

    /// The limits that may hold back a job `req` would claim, or `None` (the usual claim).
    pub(crate) fn gate(&self, req: &ClaimRequest) -> Option<Gate> {
        let applies = |l: &&Limit| match &l.scope {
            LimitScope::Queue(q) => req.queues.contains(q),
            LimitScope::Name(n) => req.names.contains(n),
            // A scope this version does not know: checked job by job.
            _ => true,
        };
        let limits: Vec<Limit> = self.by_scope.values().filter(applies).cloned().collect();
        if limits.is_empty() {
            return None;
        }
        let ours = |(scope, _): &&Counted| limits.iter().any(|l| l.scope == *scope);
        Some(Gate {
            running: self.running.iter().filter(|(k, _)| ours(k)).map(|(k, v)| (k.clone(), *v)).collect(),
            windows: self.windows.iter().filter(|(k, _)| ours(k)).map(|(k, v)| (k.clone(), *v)).collect(),
            limits,
            window: window_of(req.now),
            counted: BTreeSet::new(),
        })
    }

    /// Applies a committed transaction's moves into and out of `Running`.
    pub(crate) fn log_running(&mut self, log: Vec<(JobRecord, i32)>) {
        for (job, delta) in log {
            for limit in self.by_scope.values().filter(|l| l.max_running.is_some() && l.scope.covers(&job)) {
                let key = (limit.scope.clone(), limit.key_of(&job).to_owned());
                let count = self.running.entry(key.clone()).or_default();
                *count = count.saturating_add_signed(delta);
                if *count == 0 {
                    self.running.remove(&key);
                }
            }
        }
    }

    /// Stores a committed claim's window counts.
    pub(crate) fn set_windows(&mut self, windows: Vec<(Counted, (i64, u32))>) {
        self.windows.extend(windows);
    }
}

impl Gate {
    /// Whether a limit holds `job` back now (as `MemoryStore` decides it).
    pub(crate) fn held(&self, job: &JobRecord) -> Option<Held> {
        let mut held = None;
        for limit in self.limits.iter().filter(|l| l.scope.covers(job)) {
            let key = (limit.scope.clone(), limit.key_of(job).to_owned());
            if limit.max_running.is_some_and(|max| self.running.get(&key).copied().unwrap_or(0) >= max) {
                held = held.or(Some(Held::Running));
            }
            if limit.per_second.is_some_and(|max| self.in_window(&key) >= max) {
                held = Some(Held::Rate);
            }
        }
        held
    }

    /// If every ready job of `probe`'s queue and name is held back from now on, whether by a
    /// full window (`Some(true)`) or by running jobs only (`Some(false)`): a limit of the
    /// whole scope is full (counts only grow during a claim), so the claim need not read them.
    pub(crate) fn holds_all(&self, probe: &JobRecord) -> Option<bool> {
        let covering: Vec<&Limit> = self.limits.iter().filter(|l| l.scope.covers(probe)).collect();
        let whole = |l: &&&Limit| !l.by_key;
        let key = |l: &Limit| (l.scope.clone(), String::new());
        if covering.iter().filter(whole).any(|l| l.per_second.is_some_and(|max| self.in_window(&key(l)) >= max)) {
            return Some(true);
        }
        let capped = covering
            .iter()
            .filter(whole)
            .any(|l| l.max_running.is_some_and(|max| self.running.get(&key(l)).copied().unwrap_or(0) >= max));
        (capped && covering.iter().all(|l| l.per_second.is_none())).then_some(false)
    }

    fn in_window(&self, key: &Counted) -> u32 {
        match self.windows.get(key) {
            Some(&(w, n)) if w == self.window => n,
            _ => 0,
        }
    }

    /// Counts a claim of `job`: one more running, and one more in the window of every
    /// per-second limit covering it (a count of another window starts again from 0).
    pub(crate) fn claim(&mut self, job: &JobRecord) {
        for limit in self.limits.iter().filter(|l| l.scope.covers(job)) {
            let key = (limit.scope.clone(), limit.key_of(job).to_owned());
            if limit.max_running.is_some() {
                *self.running.entry(key.clone()).or_default() += 1;
            }
            if limit.per_second.is_some() {
                let entry = self.windows.entry(key.clone()).or_insert((self.window, 0));
                if entry.0 != self.window {
                    *entry = (self.window, 0);
                }
                entry.1 = entry.1.saturating_add(1);
                self.counted.insert(key);
            }
        }
    }

    /// The window counts this claim changed, to store with it.
    pub(crate) fn counted(&self) -> Vec<(Counted, (i64, u32))> {
        self.counted.iter().filter_map(|k| Some((k.clone(), *self.windows.get(k)?))).collect()
    }
}

impl SledStore {
    /// Sets (`Some`) or removes the limit of `scope` in the `limits` tree and in memory, and
    /// recounts the running jobs. Returns whether there was one.
    fn change_limit(&self, scope: &LimitScope, limit: Option<&Limit>) -> Result<bool, StoreError> {
        let key = keys::limit_scope(scope)?;
        self.locked(|s| {
            let tree = &s.trees().limits;
            let old = match limit {
                Some(l) => tree.insert(key, codec::encode_limit(l)?),
                None => tree.remove(key),
            };
            let existed = old.map_err(|e| store_error("write limits", e))?.is_some();
            let mut limits = s.limits.lock();
            match limit {
                Some(l) => limits.by_scope.insert(scope.clone(), l.clone()),
                None => limits.by_scope.remove(scope),
            };
            limits.running = s.count_running(&limits.by_scope)?;
            Ok(existed)
        })
    }

    /// The running jobs per (scope, key) of every limit with `max_running`, from the lease index.
    fn count_running(&self, limits: &BTreeMap<LimitScope, Limit>) -> Result<HashMap<Counted, u32>, StoreError> {
        let mut running = HashMap::new();
        if !limits.values().any(|l| l.max_running.is_some()) {
            return Ok(running);
        }
        for entry in &self.trees().lease {
            let (k, _) = entry.map_err(|e| store_error("scan leases", e))?;
            let Some(job) = keys::id_from(&k).map(|id| self.get(id)).transpose()?.flatten() else { continue };
            if job.status != JobStatus::Running {
                continue;
            }
            for limit in limits.values().filter(|l| l.max_running.is_some() && l.scope.covers(&job)) {
                *running.entry((limit.scope.clone(), limit.key_of(&job).to_owned())).or_default() += 1;
            }
        }
        Ok(running)
    }

    /// The limits and window counts as stored, and the running jobs they count.
    pub(crate) fn read_limits(&self) -> Result<Limits, StoreError> {
        let mut limits = BTreeMap::new();
        for entry in &self.trees().limits {
            let (k, v) = entry.map_err(|e| store_error("read limits", e))?;
            let limit = codec::decode_limit(&k, &v)?;
            limits.insert(limit.scope.clone(), limit);
        }
        let mut windows = HashMap::new();
        for entry in &self.trees().windows {
            let (k, v) = entry.map_err(|e| store_error("read limit windows", e))?;
            let unreadable = || StoreError::new(StoreErrorKind::Corrupt, "sled: unreadable limit window");
            let (scope, key) = keys::limit_scope_from(&k).ok_or_else(unreadable)?;
            let key = String::from_utf8(key.to_vec()).map_err(|_| unreadable())?;
            windows.insert((scope, key), keys::window_from(&v).ok_or_else(unreadable)?);
        }
        let running = self.count_running(&limits)?;
        Ok(Limits { by_scope: limits, running, windows })
    }

    pub(crate) fn set_limit_of(&self, limit: &Limit) -> Result<(), StoreError> {
        self.change_limit(&limit.scope, Some(limit)).map(|_| ())
    }

    pub(crate) fn remove_limit_of(&self, scope: &LimitScope) -> Result<bool, StoreError> {
        self.change_limit(scope, None)
    }

    pub(crate) fn all_limits(&self) -> Vec<Limit> {
        self.limits.lock().by_scope.values().cloned().collect()
    }
}

/// What a running count needs of a job: its id, queue, name and concurrency key.
pub(crate) fn counted(job: &JobRecord) -> JobRecord {
    let mut out = JobRecord::new(job.id, job.queue.clone(), job.name.clone(), Vec::new(), job.created_at);
    out.concurrency_key.clone_from(&job.concurrency_key);
    out
}
