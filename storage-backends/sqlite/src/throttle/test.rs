//! The plans of the limits' statements, and claims under random limits against `MemoryStore`.

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
        (walk::CANDIDATES, "INDEX dj_jobs_ready (queue=? AND name=?)"),
        (walk::CANDIDATES_UNKEYED, "COVERING INDEX dj_jobs_ready (queue=? AND name=?)"),
    ] {
        let found = plan(&conn, sql);
        eprintln!("{sql}\n  {found}");
        assert!(found.contains(index), "{sql}:\n{found}");
        assert!(!found.contains("TEMP B-TREE"), "{sql}:\n{found}");
    }
}

/// A tiny xorshift: the crate has no random dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[usize::try_from(self.below(from.len() as u64)).expect("small")]
    }
}

/// Claims under many random limits (the differential test sets one now and then) agree with
/// `MemoryStore` exactly: which jobs, in which order, and the next due time; limits are set and
/// removed, runs end, and the clock stays in a second, moves to the next or goes back.
#[test]
fn limited_claims_agree_with_memory() {
    use durable_jobs_store::{
        conformance::T0, ClaimRequest, JobFilter, JobStatus, MemoryStore, NewJob, Store, Timestamp, Write,
    };
    let (mut claims, mut claimed) = (0, 0);
    for seed in 1..=60u64 {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = crate::SqliteOptions::new().durability(crate::Durability::Normal);
        let sql = crate::SqliteStore::open_with(dir.path().join("jobs.db"), options).expect("open");
        let mem = MemoryStore::new();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut now = T0;
        let mut running = Vec::new();
        for step in 0..250 {
            let context = format!("seed {seed}, step {step}");
            now = Timestamp(match rng.below(10) {
                0 => now.0 + 1_000_000,
                1 => now.0 - 1_000_000,
                _ => now.0 + i64::try_from(rng.below(200_000)).expect("small"),
            });
            match rng.below(10) {
                0..=2 => {
                    let jobs: Vec<NewJob> = (0..=rng.below(4))
                        .map(|_| {
                            let job = NewJob::new(rng.pick(&["q1", "q2"]), rng.pick(&["a", "b"]), b"{}".to_vec(), now)
                                .priority(i32::try_from(rng.below(2)).expect("small"));
                            match rng.pick(&["", "t1", "t2", "none"]) {
                                "none" => job,
                                key => job.concurrency_key(key),
                            }
                        })
                        .collect();
                    assert_eq!(sql.enqueue(&jobs).expect("enqueue"), mem.enqueue(&jobs).expect("enqueue"), "{context}");
                }
                3 => {
                    let scope = if rng.below(2) == 0 {
                        LimitScope::Queue(rng.pick(&["q1", "q2"]).into())
                    } else {
                        LimitScope::Name(rng.pick(&["a", "b"]).into())
                    };
                    if rng.below(4) == 0 {
                        assert_eq!(
                            sql.remove_limit(&scope).expect("remove"),
                            mem.remove_limit(&scope).expect("remove")
                        );
                    } else {
                        let mut limit = Limit::new(scope).by_key(rng.below(2) == 0);
                        // Small enough to hold jobs back, or room for whole claims.
                        let some = |rng: &mut Rng| [0, 1, 2, 3, 40][usize::try_from(rng.below(5)).expect("small")];
                        if rng.below(3) != 0 {
                            limit = limit.max_running(some(&mut rng));
                        }
                        if rng.below(2) == 0 {
                            limit = limit.per_second(some(&mut rng));
                        }
                        sql.set_limit(&limit).expect("set");
                        mem.set_limit(&limit).expect("set");
                    }
                }
                4..=5 if !running.is_empty() => {
                    let n = usize::try_from(rng.below(running.len() as u64)).expect("small");
                    let run = running.swap_remove(n);
                    let done = [Write::complete(run, b"1".to_vec())];
                    assert_eq!(
                        sql.commit("w", now, &done).expect("commit"),
                        mem.commit("w", now, &done).expect("commit")
                    );
                }
                _ => {
                    let queues: Vec<&str> = match rng.below(3) {
                        0 => vec!["q1"],
                        1 => vec!["q2"],
                        _ => vec!["q1", "q2"],
                    };
                    let names: Vec<&str> = match rng.below(3) {
                        0 => vec!["a"],
                        1 => vec!["b"],
                        _ => vec!["a", "b"],
                    };
                    let exclude =
                        (0..rng.below(2)).map(|_| durable_jobs_store::JobId(1 + rng.below(30) as i64)).collect();
                    let req = ClaimRequest::new("w", now, Timestamp(now.0 + 60_000_000))
                        .queues(queues)
                        .names(names)
                        .limit(usize::try_from(rng.below(6)).expect("small"))
                        .exclude(exclude);
                    let got = sql.claim(&req).expect("claim");
                    assert_eq!(got, mem.claim(&req).expect("claim"), "{context}: {req:?}");
                    claims += 1;
                    claimed += got.jobs.len();
                    running.extend(got.jobs.iter().map(durable_jobs_store::ClaimedJob::claim));
                }
            }
        }
        let all = JobFilter::new().limit(usize::MAX);
        assert_eq!(sql.list(&all).expect("list"), mem.list(&all).expect("list"), "seed {seed}");
        assert_eq!(sql.limits().expect("limits"), mem.limits().expect("limits"), "seed {seed}");
        assert!(mem.list(&all).expect("list").iter().any(|j| j.status == JobStatus::Pending), "seed {seed}: none held");
    }
    assert!(claims > 0 && claimed > 0, "{claims} claims took {claimed} jobs");
}
