//! Limits as statements: stored in `dj_limits`, read by every claim with the paused queues
//! (one tiny read), and enforced only by claims a limit covers.
//!
//! Such a claim walks the ready jobs in claim order as `MemoryStore` does, skipping the ones a
//! limit holds back. It counts the running jobs of each limit and key once (an indexed count of
//! `capped` running rows), and reads and writes each window count once; the jobs it claims in
//! between are counted in memory. A queue or name whose remaining jobs are all held back for
//! the rest of the call is not read further, so a full cap does not make claims read its
//! backlog (PERFORMANCE.md, fact 12).

use std::cmp::Reverse;
use std::collections::HashMap;

use durable_jobs_store::{window_of, ClaimRequest, JobId, Limit, LimitScope, StoreError, StoreErrorKind};
use rusqlite::{params, Connection};

/// `dj_limits.kind` of a queue's limit; names' (1) sort after, as [`LimitScope`] does.
const QUEUE: i64 = 0;
const NAME: i64 = 1;

/// The paused queues (kind -1) and the limits, read together by every claim.
pub(crate) const CONFIG: &str = "SELECT -1, queue, NULL, NULL, 0 FROM dj_paused_queues
     UNION ALL SELECT kind, scope, max_running, per_second, by_key FROM dj_limits";

/// Counts of `capped` running jobs, each read from its index (the plan test below checks).
const RUNNING_IN_QUEUE: &str = "SELECT COUNT(*) FROM dj_jobs WHERE status = 'running' AND capped = 1 AND queue = ?1";
const RUNNING_IN_QUEUE_KEY: &str = "SELECT COUNT(*) FROM dj_jobs
     WHERE status = 'running' AND capped = 1 AND queue = ?1 AND COALESCE(concurrency_key, '') = ?2";
const RUNNING_OF_NAME: &str = "SELECT COUNT(*) FROM dj_jobs WHERE status = 'running' AND capped = 1 AND name = ?1";
const RUNNING_OF_NAME_KEY: &str = "SELECT COUNT(*) FROM dj_jobs
     WHERE status = 'running' AND capped = 1 AND name = ?1 AND COALESCE(concurrency_key, '') = ?2";

/// The ready jobs of queue `?1` and name `?2` in claim order with their key, `?3` of them
/// after the first `?4`.
const CANDIDATES: &str = "SELECT priority, run_at, id, concurrency_key FROM dj_jobs
     WHERE status = 'pending' AND queue = ?1 AND name = ?2
     ORDER BY priority DESC, run_at, id LIMIT ?3 OFFSET ?4";

const WINDOW: &str =
    "SELECT second, count FROM dj_limit_windows WHERE kind = ?1 AND scope = ?2 AND concurrency_key = ?3";

const COUNT_WINDOW: &str = "INSERT INTO dj_limit_windows (kind, scope, concurrency_key, second, count)
     VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (kind, scope, concurrency_key) DO UPDATE SET second = excluded.second, count = excluded.count";

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

/// Stores `limit`. A running cap first marks the running jobs
/// it covers as `capped`, so that its counts see jobs claimed before it existed.
pub(crate) fn set_limit(conn: &Connection, limit: &Limit) -> rusqlite::Result<()> {
    let (kind, scope) = stored(&limit.scope).map_err(not_stored)?;
    if limit.max_running.is_some() {
        let sql = if kind == QUEUE {
            "UPDATE dj_jobs SET capped = 1 WHERE status = 'running' AND capped = 0 AND queue = ?1"
        } else {
            "UPDATE dj_jobs SET capped = 1 WHERE status = 'running' AND capped = 0 AND name = ?1"
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

/// Sorted by scope: queues first (kind 0), each by name in byte order, as `LimitScope`'s `Ord`.
pub(crate) fn limits(conn: &Connection) -> rusqlite::Result<Vec<Limit>> {
    let mut all = config(conn)?.limits;
    all.sort_by(|a, b| a.scope.cmp(&b.scope));
    Ok(all)
}

/// Why a limit holds a ready job back (as `MemoryStore`'s `Held`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Running,
    Rate,
}

/// Claim order: priority (highest first), `run_at`, id.
type Order = (Reverse<i32>, i64, i64);

/// One ready job: its claim order and the key its limits count it under.
#[derive(Debug)]
struct Candidate {
    order: Order,
    key: Option<String>,
}

/// The ready jobs of one queue and name read so far.
#[derive(Debug)]
struct Range<'r> {
    queue: &'r str,
    name: &'r str,
    rows: Vec<Candidate>,
    /// Rows read from the index (excluded ones too): the offset of the next read.
    read: i64,
    next: usize,
    exhausted: bool,
    /// Every job left in it is held back until the call ends.
    dead: bool,
}

/// The jobs a limited claim takes, and whether a per-second limit held one back.
#[derive(Debug, Default)]
pub(crate) struct Chosen {
    pub(crate) ids: Vec<i64>,
    pub(crate) rate_held: bool,
}

/// The counts of the limits covering one claim: read once per limit and key, then kept up to
/// date in memory as the claim takes jobs.
struct Counts<'c> {
    conn: &'c Connection,
    limits: Vec<&'c Limit>,
    second: i64,
    running: HashMap<(usize, String), u32>,
    /// (Count in this second, whether this claim added to it.)
    windows: HashMap<(usize, String), (u32, bool)>,
}

impl Counts<'_> {
    fn running(&mut self, limit: usize, key: &str) -> rusqlite::Result<u32> {
        if let Some(n) = self.running.get(&(limit, key.to_owned())) {
            return Ok(*n);
        }
        let (kind, scope) = stored(&self.limits[limit].scope).map_err(not_stored)?;
        let by_key = self.limits[limit].by_key;
        let sql = match (kind, by_key) {
            (QUEUE, false) => RUNNING_IN_QUEUE,
            (QUEUE, true) => RUNNING_IN_QUEUE_KEY,
            (_, false) => RUNNING_OF_NAME,
            (_, true) => RUNNING_OF_NAME_KEY,
        };
        let mut stmt = self.conn.prepare_cached(sql)?;
        let n: i64 = if by_key {
            stmt.query_row(params![scope, key], |r| r.get(0))?
        } else {
            stmt.query_row([scope], |r| r.get(0))?
        };
        let n = crate::rows::count(n);
        self.running.insert((limit, key.to_owned()), n);
        Ok(n)
    }

    fn counted(&mut self, limit: usize, key: &str) -> rusqlite::Result<u32> {
        if let Some((n, _)) = self.windows.get(&(limit, key.to_owned())) {
            return Ok(*n);
        }
        let (kind, scope) = stored(&self.limits[limit].scope).map_err(not_stored)?;
        let mut stmt = self.conn.prepare_cached(WINDOW)?;
        let mut rows = stmt.query(params![kind, scope, key])?;
        let mut n = 0;
        while let Some(r) = rows.next()? {
            if r.get::<_, i64>(0)? == self.second {
                n = crate::rows::count(r.get(1)?);
            }
        }
        self.windows.insert((limit, key.to_owned()), (n, false));
        Ok(n)
    }

    /// The limits covering jobs of `queue` and `name`.
    fn covering<'a>(&'a self, queue: &'a str, name: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.limits.iter().enumerate().filter_map(move |(i, l)| match &l.scope {
            LimitScope::Queue(q) if q == queue => Some(i),
            LimitScope::Name(n) if n == name => Some(i),
            _ => None,
        })
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
        for i in self.covering(queue, name).collect::<Vec<_>>() {
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
    /// `MemoryStore::count_start`); [`held`](Self::held) has read its counts.
    fn take(&mut self, queue: &str, name: &str, key: Option<&str>) {
        for i in self.covering(queue, name).collect::<Vec<_>>() {
            let (limit, key) = (self.limits[i], self.key_of(i, key).to_owned());
            if limit.max_running.is_some() {
                *self.running.entry((i, key.clone())).or_default() += 1;
            }
            if limit.per_second.is_some() {
                let entry = self.windows.entry((i, key)).or_default();
                *entry = (entry.0.saturating_add(1), true);
            }
        }
    }

    /// Whether every job left in `range` is held back for the rest of the call, and by a rate.
    /// A full per-second limit of the whole scope stays full; a full cap of the whole scope
    /// stays full, and the per-second limits of its own scope cannot count more claims (none of
    /// their jobs can be taken). Anything else is decided job by job.
    fn dead(&mut self, range: &Range<'_>) -> rusqlite::Result<Option<Held>> {
        let covering: Vec<usize> = self.covering(range.queue, range.name).collect();
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
    fn save(&self) -> rusqlite::Result<()> {
        let mut stmt = self.conn.prepare_cached(COUNT_WINDOW)?;
        for ((i, key), (n, added)) in &self.windows {
            if *added {
                let (kind, scope) = stored(&self.limits[*i].scope).map_err(not_stored)?;
                stmt.execute(params![kind, scope, key, self.second, n])?;
            }
        }
        Ok(())
    }
}

fn not_stored(e: StoreError) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
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

/// Chooses the jobs a claim limited by `limits` takes from `queues` × `names`, in claim order,
/// and counts them in their windows.
pub(crate) fn choose(
    conn: &Connection,
    req: &ClaimRequest,
    limits: Vec<&Limit>,
    queues: &[&str],
    names: &[&str],
) -> rusqlite::Result<Chosen> {
    let mut counts =
        Counts { conn, limits, second: window_of(req.now), running: HashMap::new(), windows: HashMap::new() };
    let mut ranges: Vec<Range<'_>> = queues
        .iter()
        .flat_map(|&queue| names.iter().map(move |&name| (queue, name)))
        .map(|(queue, name)| Range { queue, name, rows: Vec::new(), read: 0, next: 0, exhausted: false, dead: false })
        .collect();
    let page = i64::try_from(req.limit.saturating_add(req.exclude.len())).unwrap_or(i64::MAX).max(8);
    let mut out = Chosen::default();
    while out.ids.len() < req.limit {
        let mut best: Option<(usize, Order)> = None;
        for (i, range) in ranges.iter_mut().enumerate() {
            if range.dead {
                continue;
            }
            if range.next == range.rows.len() && !range.exhausted {
                // Twice what was read so far: a backlog of held jobs costs at most twice its
                // length, whatever the page.
                read_more(conn, req, range, page.max(range.read))?;
            }
            let Some(head) = range.rows.get(range.next) else { continue };
            if best.is_none_or(|(_, order)| head.order < order) {
                best = Some((i, head.order));
            }
        }
        let Some((b, _)) = best else { break };
        if let Some(held) = counts.dead(&ranges[b])? {
            out.rate_held |= held == Held::Rate;
            ranges[b].dead = true;
            continue;
        }
        let range = &mut ranges[b];
        let job = &range.rows[range.next];
        range.next += 1;
        match counts.held(range.queue, range.name, job.key.as_deref())? {
            Some(Held::Rate) => out.rate_held = true,
            Some(Held::Running) => {}
            None => {
                counts.take(range.queue, range.name, job.key.as_deref());
                out.ids.push(job.order.2);
            }
        }
    }
    counts.save()?;
    Ok(out)
}

/// Reads up to `n` more ready jobs of `range`, leaving out the excluded ones.
fn read_more(conn: &Connection, req: &ClaimRequest, range: &mut Range<'_>, n: i64) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(CANDIDATES)?;
    let mut rows = stmt.query(params![range.queue, range.name, n, range.read])?;
    let mut read = 0;
    while let Some(r) = rows.next()? {
        read += 1;
        let id: i64 = r.get(2)?;
        if !req.exclude.contains(&JobId(id)) {
            range.rows.push(Candidate { order: (Reverse(r.get(0)?), r.get(1)?, id), key: r.get(3)? });
        }
    }
    range.read += read;
    range.exhausted = read < n;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::tests::plan;

    /// Running caps count `capped` running rows from their own index, nothing else; a claim's
    /// candidates are read from the ready index in claim order.
    #[test]
    fn counts_read_their_indexes() {
        let mut conn = Connection::open_in_memory().expect("open");
        crate::connection::plan_once(&conn).expect("stable plans");
        crate::schema::migrate(&mut conn, 0).expect("migrate");
        for (sql, index) in [
            (RUNNING_IN_QUEUE, "COVERING INDEX dj_jobs_capped_queue (queue=?)"),
            (RUNNING_IN_QUEUE_KEY, "COVERING INDEX dj_jobs_capped_queue (queue=? AND <expr>=?)"),
            (RUNNING_OF_NAME, "COVERING INDEX dj_jobs_capped_name (name=?)"),
            (RUNNING_OF_NAME_KEY, "COVERING INDEX dj_jobs_capped_name (name=? AND <expr>=?)"),
            (WINDOW, "PRIMARY KEY (kind=? AND scope=? AND concurrency_key=?)"),
            (CANDIDATES, "INDEX dj_jobs_ready (queue=? AND name=?)"),
        ] {
            let found = plan(&conn, sql);
            eprintln!("{sql}\n  {found}");
            assert!(found.contains(index), "{sql}:\n{found}");
            assert!(!found.contains("TEMP B-TREE"), "{sql}:\n{found}");
        }
    }
}
