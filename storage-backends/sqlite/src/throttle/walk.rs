//! The claim a limit may hold jobs back from: the ready jobs of each queue and name read in
//! claim order, merged, and taken or skipped one by one, exactly as `MemoryStore` does.

use std::cmp::Reverse;

use durable_jobs_store::{ClaimRequest, JobId};
use rusqlite::{params, Connection};

use super::{Counts, Held};

/// The ready jobs of queue `?1` and name `?2` in claim order with their key, `?3` of them
/// after the first `?4`.
pub(super) const CANDIDATES: &str = "SELECT priority, run_at, id, concurrency_key FROM dj_jobs
     WHERE status = 'pending' AND queue = ?1 AND name = ?2
     ORDER BY priority DESC, run_at, id LIMIT ?3 OFFSET ?4";

/// The same without the key, read from the index alone, when no limit counts keys.
pub(super) const CANDIDATES_UNKEYED: &str = "SELECT priority, run_at, id, NULL FROM dj_jobs
     WHERE status = 'pending' AND queue = ?1 AND name = ?2
     ORDER BY priority DESC, run_at, id LIMIT ?3 OFFSET ?4";

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

/// The jobs a limited claim takes, in claim order, and whether a per-second limit held one
/// back; `counts` has counted them.
#[derive(Debug, Default)]
pub(crate) struct Chosen {
    pub(crate) ids: Vec<i64>,
    pub(crate) rate_held: bool,
}

/// Chooses the jobs a claim takes from `queues` × `names` under the limits of `counts`.
pub(crate) fn choose(
    counts: &mut Counts<'_>,
    req: &ClaimRequest,
    queues: &[&str],
    names: &[&str],
) -> rusqlite::Result<Chosen> {
    let conn = counts.conn;
    let sql = if counts.keyed() { CANDIDATES } else { CANDIDATES_UNKEYED };
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
                // As much as was read so far: a backlog of held jobs costs at most twice its
                // length in reads.
                read_more(conn, sql, req, range, page.max(range.read))?;
            }
            let Some(head) = range.rows.get(range.next) else { continue };
            if best.is_none_or(|(_, order)| head.order < order) {
                best = Some((i, head.order));
            }
        }
        let Some((b, _)) = best else { break };
        let range = &mut ranges[b];
        if let Some(held) = counts.dead(range.queue, range.name)? {
            out.rate_held |= held == Held::Rate;
            range.dead = true;
            continue;
        }
        let job = &range.rows[range.next];
        range.next += 1;
        match counts.held(range.queue, range.name, job.key.as_deref())? {
            Some(Held::Rate) => out.rate_held = true,
            Some(Held::Running) => {}
            None => {
                counts.take(range.queue, range.name, job.key.as_deref())?;
                out.ids.push(job.order.2);
            }
        }
    }
    Ok(out)
}

/// Reads up to `n` more ready jobs of `range` with `sql`, leaving out the excluded ones.
fn read_more(conn: &Connection, sql: &str, req: &ClaimRequest, range: &mut Range<'_>, n: i64) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(sql)?;
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
