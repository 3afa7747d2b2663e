//! Limits as statements: stored in `dj_limits`, read by every claim with the paused queues
//! (one tiny read), and enforced only by claims a limit covers.
//!
//! Such a claim first asks whether any job could be held back at all: if every covering limit
//! has room for the whole claim, it takes jobs as an unlimited claim does and only counts them.
//! Otherwise it walks the ready jobs in claim order as `MemoryStore` does ([`walk`]). Either
//! way each running count and each window count is read once per limit and key (running jobs
//! from the `capped` indexes), updated in memory as the claim takes jobs, and each window
//! written once (PERFORMANCE.md, fact 12).

mod walk;

use std::collections::HashMap;

use durable_jobs_store::{window_of, Limit, LimitScope, StoreError, StoreErrorKind, Timestamp};
use rusqlite::{params, Connection};

pub(crate) use walk::choose;

/// `dj_limits.kind` of a queue's limit; names' (1) sort after, as [`LimitScope`] does.
const QUEUE: i64 = 0;
const NAME: i64 = 1;

/// `dj_jobs.capped` bits: a cap of the job's queue, of its name, counts it (the indexes'
/// `WHERE` list the values with each bit).
const CAPPED_BY_QUEUE: i64 = 1;
const CAPPED_BY_NAME: i64 = 2;

/// The paused queues (kind -1) and the limits, read together by every claim.
pub(crate) const CONFIG: &str = "SELECT -1, queue, NULL, NULL, 0 FROM dj_paused_queues
     UNION ALL SELECT kind, scope, max_running, per_second, by_key FROM dj_limits";

/// Counts of `capped` running jobs, each read from its index (`test.rs` checks the plans).
const RUNNING_IN_QUEUE: &str =
    "SELECT COUNT(*) FROM dj_jobs WHERE status = 'running' AND capped IN (1, 3) AND queue = ?1";
const RUNNING_IN_QUEUE_KEY: &str = "SELECT COUNT(*) FROM dj_jobs
     WHERE status = 'running' AND capped IN (1, 3) AND queue = ?1 AND COALESCE(concurrency_key, '') = ?2";
const RUNNING_OF_NAME: &str =
    "SELECT COUNT(*) FROM dj_jobs WHERE status = 'running' AND capped IN (2, 3) AND name = ?1";
const RUNNING_OF_NAME_KEY: &str = "SELECT COUNT(*) FROM dj_jobs
     WHERE status = 'running' AND capped IN (2, 3) AND name = ?1 AND COALESCE(concurrency_key, '') = ?2";

const WINDOW: &str =
    "SELECT second, count FROM dj_limit_windows WHERE kind = ?1 AND scope = ?2 AND concurrency_key = ?3";

/// Adds `?5` claims to the count of second `?4` (a count of another second starts again).
const COUNT_WINDOW: &str = "INSERT INTO dj_limit_windows (kind, scope, concurrency_key, second, count)
     VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (kind, scope, concurrency_key) DO UPDATE
     SET count = CASE WHEN second = excluded.second THEN count + excluded.count ELSE excluded.count END,
         second = excluded.second";

/// What every claim reads before it looks at jobs.
#[derive(Debug, Default)]
pub(crate) struct Config {
    pub(crate) paused: Vec<String>,
    pub(crate) limits: Vec<Limit>,
}

pub(crate) fn config(conn: &Connection) -> rusqlite::Result<Config> {
    let mut out = Config::default();
    let mut stmt = conn.prepare_cached(CONFIG)?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (kind, scope): (i64, String) = (r.get(0)?, r.get(1)?);
        let scope = match kind {
            -1 => {
                out.paused.push(scope);
                continue;
            }
            QUEUE => LimitScope::Queue(scope),
            _ => LimitScope::Name(scope),
        };
        let count = |i| r.get::<_, Option<i64>>(i).map(|n| n.map(crate::rows::count));
        let mut limit = Limit::new(scope).by_key(r.get(4)?);
        (limit.max_running, limit.per_second) = (count(2)?, count(3)?);
        out.limits.push(limit);
    }
    Ok(out)
}

/// How `scope` is stored: its kind and name; a scope this version does not know is refused.
pub(crate) fn stored(scope: &LimitScope) -> Result<(i64, &str), StoreError> {
    match scope {
        LimitScope::Queue(q) => Ok((QUEUE, q)),
        LimitScope::Name(n) => Ok((NAME, n)),
        other => Err(StoreError::new(StoreErrorKind::InvalidInput, format!("sqlite: unknown limit scope {other:?}"))),
    }
}

fn not_stored(e: StoreError) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

/// Stores `limit`. A running cap first marks the running jobs it covers as `capped`, so that
/// its counts see jobs claimed before it existed.
pub(crate) fn set_limit(conn: &Connection, limit: &Limit) -> rusqlite::Result<()> {
    let (kind, scope) = stored(&limit.scope).map_err(not_stored)?;
    if limit.max_running.is_some() {
        let sql = if kind == QUEUE {
            "UPDATE dj_jobs SET capped = capped | 1 WHERE status = 'running' AND queue = ?1 AND capped & 1 = 0"
        } else {
            "UPDATE dj_jobs SET capped = capped | 2 WHERE status = 'running' AND name = ?1 AND capped & 2 = 0"
        };
        conn.prepare_cached(sql)?.execute([scope])?;
    }
    conn.prepare_cached(
        "INSERT INTO dj_limits (kind, scope, max_running, per_second, by_key) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (kind, scope) DO UPDATE
         SET max_running = excluded.max_running, per_second = excluded.per_second, by_key = excluded.by_key",
    )?
    .execute(params![kind, scope, limit.max_running, limit.per_second, limit.by_key])?;
    Ok(())
}

/// Whether there was a limit to remove. Its window counts stay, as `set_limit` keeps them.
pub(crate) fn remove_limit(conn: &Connection, scope: &LimitScope) -> rusqlite::Result<bool> {
    let (kind, scope) = stored(scope).map_err(not_stored)?;
    Ok(conn.prepare_cached("DELETE FROM dj_limits WHERE kind = ?1 AND scope = ?2")?.execute(params![kind, scope])? == 1)
}

/// Sorted by scope: queues first, each by name in byte order, as `LimitScope`'s `Ord`.
pub(crate) fn limits(conn: &Connection) -> rusqlite::Result<Vec<Limit>> {
    let mut all = config(conn)?.limits;
    all.sort_by(|a, b| a.scope.cmp(&b.scope));
    Ok(all)
}

/// The limits of `config` that can hold back a job of `queues` and `names`.
pub(crate) fn covering<'c>(config: &'c Config, queues: &[&str], names: &[&str]) -> Vec<&'c Limit> {
    let limits = config.limits.iter().filter(|l| l.max_running.is_some() || l.per_second.is_some());
    limits
        .filter(|l| match &l.scope {
            LimitScope::Queue(q) => queues.contains(&q.as_str()),
            LimitScope::Name(n) => names.contains(&n.as_str()),
            _ => false,
        })
        .collect()
}

/// Why a limit holds a ready job back (as `MemoryStore`'s `Held`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Running,
    Rate,
}

/// The counts of the limits covering one claim: read once per limit and key, then kept up to
/// date in memory as the claim takes jobs, and saved once.
pub(crate) struct Counts<'c> {
    conn: &'c Connection,
    limits: Vec<&'c Limit>,
    second: i64,
    /// Per limit: key → running.
    running: Vec<HashMap<String, u32>>,
    /// Per limit: key → (count in this second, claims this call added).
    windows: Vec<HashMap<String, (u32, u32)>>,
}

impl<'c> Counts<'c> {
    pub(crate) fn new(conn: &'c Connection, limits: Vec<&'c Limit>, now: Timestamp) -> Self {
        let n = limits.len();
        Counts {
            conn,
            limits,
            second: window_of(now),
            running: vec![HashMap::new(); n],
            windows: vec![HashMap::new(); n],
        }
    }

    /// The `capped` bits of the jobs this claim takes: over-marking only costs index entries.
    pub(crate) fn capped(&self) -> i64 {
        self.limits.iter().filter(|l| l.max_running.is_some()).fold(0, |bits, l| match l.scope {
            LimitScope::Queue(_) => bits | CAPPED_BY_QUEUE,
            _ => bits | CAPPED_BY_NAME,
        })
    }

    /// Whether no limit can hold back any of `n` more claims: each cap's whole scope, and each
    /// rate's count, leaves room for all of them. A keyed rate is left to the walk.
    pub(crate) fn room_for(&mut self, n: usize) -> rusqlite::Result<bool> {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        for i in 0..self.limits.len() {
            let limit = self.limits[i];
            if let Some(max) = limit.max_running {
                let whole = if limit.by_key { self.count_running(i, None)? } else { self.running(i, "")? };
                if whole.saturating_add(n) > max {
                    return Ok(false);
                }
            }
            if let Some(max) = limit.per_second {
                if limit.by_key || self.counted(i, "")?.saturating_add(n) > max {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    fn running(&mut self, i: usize, key: &str) -> rusqlite::Result<u32> {
        if let Some(n) = self.running[i].get(key) {
            return Ok(*n);
        }
        let n = self.count_running(i, self.limits[i].by_key.then_some(key))?;
        self.running[i].insert(key.to_owned(), n);
        Ok(n)
    }

    /// The running jobs limit `i` covers: all of its scope, or those of one key.
    fn count_running(&self, i: usize, key: Option<&str>) -> rusqlite::Result<u32> {
        let (kind, scope) = stored(&self.limits[i].scope).map_err(not_stored)?;
        let sql = match (kind, key.is_some()) {
            (QUEUE, false) => RUNNING_IN_QUEUE,
            (QUEUE, true) => RUNNING_IN_QUEUE_KEY,
            (_, false) => RUNNING_OF_NAME,
            (_, true) => RUNNING_OF_NAME_KEY,
        };
        let mut stmt = self.conn.prepare_cached(sql)?;
        let n: i64 = match key {
            Some(key) => stmt.query_row(params![scope, key], |r| r.get(0))?,
            None => stmt.query_row([scope], |r| r.get(0))?,
        };
        Ok(crate::rows::count(n))
    }

    fn counted(&mut self, i: usize, key: &str) -> rusqlite::Result<u32> {
        if let Some((n, _)) = self.windows[i].get(key) {
            return Ok(*n);
        }
        let (kind, scope) = stored(&self.limits[i].scope).map_err(not_stored)?;
        let mut stmt = self.conn.prepare_cached(WINDOW)?;
        let mut rows = stmt.query(params![kind, scope, key])?;
        let mut n = 0;
        while let Some(r) = rows.next()? {
            if r.get::<_, i64>(0)? == self.second {
                n = crate::rows::count(r.get(1)?);
            }
        }
        self.windows[i].insert(key.to_owned(), (n, 0));
        Ok(n)
    }

    /// Whether limit `i` covers jobs of `queue` and `name`.
    fn covers(&self, i: usize, queue: &str, name: &str) -> bool {
        match &self.limits[i].scope {
            LimitScope::Queue(q) => q == queue,
            LimitScope::Name(n) => n == name,
            _ => false,
        }
    }

    /// The key limit `i` counts a job with `key` under.
    fn key_of<'k>(&self, i: usize, key: Option<&'k str>) -> &'k str {
        if self.limits[i].by_key {
            key.unwrap_or("")
        } else {
            ""
        }
    }

    /// Whether a limit holds a job back (as `MemoryStore::held_back`).
    fn held(&mut self, queue: &str, name: &str, key: Option<&str>) -> rusqlite::Result<Option<Held>> {
        let mut held = None;
        for i in 0..self.limits.len() {
            if !self.covers(i, queue, name) {
                continue;
            }
            let (limit, key) = (self.limits[i], self.key_of(i, key));
            if let Some(max) = limit.max_running {
                if self.running(i, key)? >= max {
                    held = held.or(Some(Held::Running));
                }
            }
            if let Some(per_second) = limit.per_second {
                if self.counted(i, key)? >= per_second {
                    held = Some(Held::Rate);
                }
            }
        }
        Ok(held)
    }

    /// Counts a claimed job as running and in the windows of its limits (as
    /// `MemoryStore::count_start`).
    pub(crate) fn take(&mut self, queue: &str, name: &str, key: Option<&str>) -> rusqlite::Result<()> {
        for i in 0..self.limits.len() {
            if !self.covers(i, queue, name) {
                continue;
            }
            let (limit, key) = (self.limits[i], self.key_of(i, key));
            // A count read (by `held`) is kept up to date; a claim with room for all its jobs
            // reads none.
            if let Some(n) = self.running[i].get_mut(key) {
                *n = n.saturating_add(1);
            }
            if limit.per_second.is_some() {
                let n = self.counted(i, key)?;
                let entry = self.windows[i].entry(key.to_owned()).or_default();
                *entry = (n.saturating_add(1), entry.1.saturating_add(1));
            }
        }
        Ok(())
    }

    /// Whether every job left of `queue` and `name` is held back for the rest of the call, and
    /// by what. A full per-second limit of the whole scope stays full; a full cap of the whole
    /// scope stays full, and the per-second limits of its own scope count no more claims (none
    /// of their jobs can be taken). Anything else is decided job by job.
    fn dead(&mut self, queue: &str, name: &str) -> rusqlite::Result<Option<Held>> {
        let covering: Vec<usize> = (0..self.limits.len()).filter(|&i| self.covers(i, queue, name)).collect();
        let mut full_caps = Vec::new();
        for &i in &covering {
            let limit = self.limits[i];
            if limit.by_key {
                continue;
            }
            if let Some(max) = limit.per_second {
                if self.counted(i, "")? >= max {
                    return Ok(Some(Held::Rate));
                }
            }
            if let Some(max) = limit.max_running {
                if self.running(i, "")? >= max {
                    full_caps.push(i);
                }
            }
        }
        let frozen = covering.iter().all(|&i| self.limits[i].per_second.is_none() || full_caps.contains(&i));
        Ok((!full_caps.is_empty() && frozen).then_some(Held::Running))
    }

    /// Writes the window counts this claim added to, one statement per limit and key.
    pub(crate) fn save(&self) -> rusqlite::Result<()> {
        let mut stmt = self.conn.prepare_cached(COUNT_WINDOW)?;
        for (i, windows) in self.windows.iter().enumerate() {
            for (key, (_, added)) in windows {
                if *added > 0 {
                    let (kind, scope) = stored(&self.limits[i].scope).map_err(not_stored)?;
                    stmt.execute(params![kind, scope, key, self.second, added])?;
                }
            }
        }
        Ok(())
    }

    /// Whether a limit counts jobs by key (so a claim must read its candidates' keys).
    fn keyed(&self) -> bool {
        self.limits.iter().any(|l| l.by_key)
    }
}

#[cfg(test)]
mod test;
