//! The differential test: random sequences of every `Store` call, with a clock that moves and
//! jumps, on the store under test and on [`MemoryStore`], whose results and records must agree.

use std::fmt::Debug;
use std::time::Duration;

use fastrand::Rng;

use super::{Harness, T0};
use crate::{
    Checkpoint, ChildOf, Claim, ClaimRequest, ClaimToken, FanIn, JobFilter, JobId, JobStatus, MemoryStore, NewJob,
    ReclaimRequest, RetryPolicy, SignalId, Store, StoreError, Timestamp, Write, WriteOp, WriteOutcome,
};

const QUEUES: [&str; 2] = ["default", "mail"];
const NAMES: [&str; 4] = ["a", "b", "c", "zzz"];
const WORKERS: [&str; 3] = ["w1", "w2", "w3"];
const SIGNALS: [&str; 2] = ["x", "y"];

/// Runs [`differential`] with the seed in `DJ_SEED`, or a fresh one (printed on failure).
pub fn differential_against_memory_store(h: &dyn Harness) {
    let seed = std::env::var("DJ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    differential(h, seed, 1500);
}

/// Runs `steps` random calls with `seed` on a fresh store from `h` and on a [`MemoryStore`],
/// panicking at the first result or record that differs (the message names the seed, the
/// step and both values).
pub fn differential(h: &dyn Harness, seed: u64, steps: usize) {
    let tested = h.open();
    let mut run = Run { rng: Rng::with_seed(seed), now: T0, claims: Vec::new(), jobs: 0, signals: 0, seed, step: 0 };
    let reference = MemoryStore::new();
    for step in 0..steps {
        run.step = step;
        run.one_call(&reference, &*tested);
        if step % 50 == 49 || step + 1 == steps {
            run.compare_everything(&reference, &*tested);
        }
    }
}

struct Run {
    rng: Rng,
    now: Timestamp,
    /// Every run ever claimed, with its worker (stale ones too: their writes must be refused).
    claims: Vec<(String, Claim)>,
    /// Jobs inserted so far (ids are 1..=jobs on both stores).
    jobs: i64,
    /// Signals sent so far (ids are 1..=signals).
    signals: i64,
    seed: u64,
    step: usize,
}

impl Run {
    fn secs(&mut self, lo: i64, hi: i64) -> Timestamp {
        Timestamp(self.now.0 + self.rng.i64(lo..=hi) * 1_000_000)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.rng.usize(..from.len())]
    }

    fn some(&mut self, from: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = from.iter().filter(|_| self.rng.bool()).map(|s| (*s).to_owned()).collect();
        if out.is_empty() {
            out.push(self.pick(from).to_owned());
        }
        out
    }

    /// A job id, usually one that exists.
    fn job_id(&mut self) -> JobId {
        JobId(self.rng.i64(1..=self.jobs + 2))
    }

    fn check<T: PartialEq + Debug>(
        &self,
        what: &str,
        expected: Result<T, StoreError>,
        got: Result<T, StoreError>,
    ) -> T {
        let context =
            format!("differential test, seed {} (rerun with DJ_SEED={}), step {}", self.seed, self.seed, self.step);
        let expected = expected.unwrap_or_else(|e| panic!("{context}: MemoryStore failed {what}: {e}"));
        let got = got.unwrap_or_else(|e| panic!("{context}: the store failed {what}: {e}"));
        assert_eq!(got, expected, "{context}: {what} differs (left: the store, right: MemoryStore)");
        got
    }

    fn one_call(&mut self, reference: &MemoryStore, tested: &dyn Store) {
        self.tick();
        match self.rng.u32(0..116) {
            0..=19 => {
                let jobs: Vec<NewJob> = (0..self.rng.usize(1..=3)).map(|_| self.new_job()).collect();
                let out = self.check("enqueue", reference.enqueue(&jobs), tested.enqueue(&jobs));
                self.jobs += out.iter().filter(|e| matches!(e, crate::Enqueued::New(_))).count() as i64;
            }
            20..=39 => {
                let req = self.claim_request();
                let out = self.check("claim", reference.claim(&req), tested.claim(&req));
                self.claims.extend(out.jobs.iter().map(|j| (req.worker.clone(), j.claim())));
            }
            40..=59 if !self.claims.is_empty() => {
                let (worker, writes) = self.writes();
                let out = self.check(
                    "commit",
                    reference.commit(&worker, self.now, &writes),
                    tested.commit(&worker, self.now, &writes),
                );
                for (write, outcome) in writes.iter().zip(out) {
                    if let (WriteOp::Suspend { children, .. }, WriteOutcome::Applied) = (&write.op, outcome) {
                        self.jobs += children.len() as i64;
                    }
                }
            }
            60..=64 if !self.claims.is_empty() => {
                let (worker, claims) = self.some_claims();
                let until = self.secs(1, 30);
                self.check("renew", reference.renew(&worker, &claims, until), tested.renew(&worker, &claims, until));
            }
            65..=68 if !self.claims.is_empty() => {
                let (worker, claims) = self.some_claims();
                self.check(
                    "release",
                    reference.release(&worker, &claims, self.now),
                    tested.release(&worker, &claims, self.now),
                );
            }
            69..=76 => {
                let dead = if self.rng.u8(..4) == 0 { self.some(&WORKERS) } else { Vec::new() };
                let req = ReclaimRequest::new(self.now, self.rng.usize(1..=4)).dead_workers(dead);
                self.check("reclaim", reference.reclaim(&req), tested.reclaim(&req));
            }
            77..=79 => {
                let id = self.job_id();
                self.check("cancel", reference.cancel(id, self.now), tested.cancel(id, self.now));
            }
            80 => {
                let ids: Vec<JobId> = (0..self.rng.usize(0..4)).map(|_| self.job_id()).collect();
                self.check("cancel_many", reference.cancel_many(&ids, self.now), tested.cancel_many(&ids, self.now));
            }
            81..=84 => {
                let id = self.job_id();
                self.check("requeue", reference.requeue(id, self.now), tested.requeue(id, self.now));
            }
            85..=88 => {
                let (id, from, limit) = (self.job_id(), self.rng.u32(0..4), self.rng.usize(0..5));
                self.check("checkpoints", reference.checkpoints(id, from, limit), tested.checkpoints(id, from, limit));
            }
            89..=92 => {
                self.check("counts", reference.counts(self.now), tested.counts(self.now));
            }
            93..=96 => {
                let filter = self.filter();
                self.check("list", reference.list(&filter), tested.list(&filter));
            }
            97..=102 => {
                let (id, name) = (self.job_id(), self.pick(&SIGNALS));
                let payload = self.rng.u8(..).to_string().into_bytes();
                let out = self.check(
                    "signal",
                    reference.signal(id, name, &payload, self.now),
                    tested.signal(id, name, &payload, self.now),
                );
                self.signals += i64::from(matches!(out, crate::SignalOutcome::Sent { .. }));
            }
            103..=104 => {
                let id = self.job_id();
                self.check("signals", reference.signals(id), tested.signals(id));
            }
            108.. => self.control_call(reference, tested),
            _ => {
                let id = self.job_id();
                self.check("get", reference.get(id), tested.get(id));
            }
        }
    }

    /// One call of operator control: pause, resume, retention, leadership, bulk requeue.
    fn control_call(&mut self, reference: &MemoryStore, tested: &dyn Store) {
        match self.rng.u32(0..22) {
            0..=3 => {
                let id = self.job_id();
                self.check("pause", reference.pause(id, self.now), tested.pause(id, self.now));
            }
            4..=6 => {
                let id = self.job_id();
                self.check("resume", reference.resume(id, self.now), tested.resume(id, self.now));
            }
            7..=8 => {
                let (queue, paused) = (self.pick(&QUEUES), self.rng.u8(..3) == 0);
                self.check(
                    "pause_queue",
                    reference.pause_queue(queue, paused, self.now),
                    tested.pause_queue(queue, paused, self.now),
                );
                self.check("paused_queues", reference.paused_queues(), tested.paused_queues());
            }
            9..=10 => {
                let status = [JobStatus::Completed, JobStatus::Failed, JobStatus::Cancelled][self.rng.usize(..3)];
                let req = crate::PurgeRequest::new(status, self.secs(-30, 5), self.rng.usize(0..=3));
                self.check("purge", reference.purge(&req), tested.purge(&req));
            }
            11 => {
                let ids: Vec<JobId> = (0..self.rng.usize(0..4)).map(|_| self.job_id()).collect();
                self.check("delete", reference.delete(&ids), tested.delete(&ids));
            }
            12..=13 => {
                let (role, holder, until) = (self.pick(&["r1", "r2"]), self.pick(&WORKERS), self.secs(-2, 20));
                self.check(
                    "lead",
                    reference.lead(role, holder, self.now, until),
                    tested.lead(role, holder, self.now, until),
                );
            }
            19 => {
                let scope = if self.rng.bool() {
                    crate::LimitScope::Queue(self.pick(&QUEUES).to_owned())
                } else {
                    crate::LimitScope::Name(self.pick(&NAMES).to_owned())
                };
                if self.rng.u8(..3) == 0 {
                    self.check("remove_limit", reference.remove_limit(&scope), tested.remove_limit(&scope));
                } else {
                    let mut limit = crate::Limit::new(scope).by_key(self.rng.bool());
                    if self.rng.bool() {
                        limit = limit.max_running(self.rng.u32(0..4));
                    }
                    if self.rng.bool() {
                        limit = limit.per_second(self.rng.u32(0..4));
                    }
                    self.check("set_limit", reference.set_limit(&limit), tested.set_limit(&limit));
                }
                self.check("limits", reference.limits(), tested.limits());
            }
            16 => {
                let (name, next) = (self.pick(&["s1", "s2"]), self.secs(-5, 20));
                let schedule = crate::ScheduleRecord::new(name, "spec", vec![self.rng.u8(..)], next, self.now);
                self.check("put_schedule", reference.put_schedule(&schedule), tested.put_schedule(&schedule));
            }
            17 => {
                let name = self.pick(&["s1", "s2"]);
                self.check("remove_schedule", reference.remove_schedule(name), tested.remove_schedule(name));
            }
            18 => {
                let name = self.pick(&["s1", "s2"]);
                // Usually the due time it has, so that it fires.
                let due = match reference.schedules().unwrap().into_iter().find(|s| s.name == name) {
                    Some(s) if self.rng.u8(..4) != 0 => s.next_fire,
                    _ => self.secs(-5, 5),
                };
                let (next, job) = (self.secs(1, 20), self.new_job());
                let out = self.check(
                    "fire",
                    reference.fire(name, due, next, &job, self.now),
                    tested.fire(name, due, next, &job, self.now),
                );
                self.jobs += i64::from(matches!(out, crate::FireOutcome::Fired(crate::Enqueued::New(_))));
                self.check("schedules", reference.schedules(), tested.schedules());
            }
            _ => {
                let ids: Vec<JobId> = (0..self.rng.usize(0..4)).map(|_| self.job_id()).collect();
                self.check("requeue_many", reference.requeue_many(&ids, self.now), tested.requeue_many(&ids, self.now));
            }
        }
    }

    /// Moves the clock: mostly forward a little, sometimes a jump either way.
    fn tick(&mut self) {
        let micros = match self.rng.u8(..20) {
            0 => -5_000_000,
            1 => 60_000_000,
            _ => self.rng.i64(0..=3_000_000),
        };
        self.now = Timestamp(self.now.0 + micros);
    }

    fn new_job(&mut self) -> NewJob {
        let (queue, name) = (self.pick(&QUEUES), self.pick(&NAMES));
        let args = format!("{{\"n\":{}}}", self.rng.u32(..1000)).into_bytes();
        let run_at = self.secs(-5, 10);
        let mut job = NewJob::new(queue, name, args, self.now)
            .priority(self.rng.i32(-1..=2))
            .run_at(run_at)
            .max_attempts(self.rng.u32(1..=3));
        if self.rng.u8(..4) == 0 {
            job = job.unique_key(self.pick(&["k1", "k2"]));
            if self.rng.bool() {
                job = job.unique_window(Duration::from_secs(self.rng.u64(1..=30)));
            }
        }
        if self.rng.u8(..3) == 0 {
            job = job.concurrency_key(self.pick(&["t1", "t2"]));
        }
        if self.rng.u8(..4) == 0 {
            job = job.timeout(Duration::from_millis(self.rng.u64(1..=5000)));
        }
        if self.rng.u8(..4) == 0 {
            job = job.retry_policy(RetryPolicy { base: Duration::from_millis(10), max: Duration::from_secs(9) });
        }
        job
    }

    fn claim_request(&mut self) -> ClaimRequest {
        let until = self.secs(1, 20);
        let exclude = (0..self.rng.usize(0..3)).map(|_| self.job_id()).collect();
        ClaimRequest::new(self.pick(&WORKERS), self.now, until)
            .queues(self.some(&QUEUES))
            .names(self.some(&NAMES[..3]))
            .limit(self.rng.usize(0..=4))
            .exclude(exclude)
    }

    /// A worker and a few writes of its runs (sometimes of another worker's, or made up).
    fn writes(&mut self) -> (String, Vec<Write>) {
        let (worker, _) = self.claims[self.rng.usize(..self.claims.len())].clone();
        let worker = if self.rng.u8(..10) == 0 { self.pick(&WORKERS).to_owned() } else { worker };
        let writes = (0..self.rng.usize(1..=3))
            .map(|_| {
                let mut claim = self.claims[self.rng.usize(..self.claims.len())].1;
                if self.rng.u8(..10) == 0 {
                    claim.token = ClaimToken(claim.token.0 + 1);
                }
                // A parent hint, right now and then, usually wrong: it must change nothing.
                let hint = self.rng.bool().then(|| ChildOf { parent: self.job_id(), index: self.rng.u32(0..3) });
                self.write(claim).with_parent(hint)
            })
            .collect();
        (worker, writes)
    }

    fn write(&mut self, claim: Claim) -> Write {
        let index = self.rng.u32(0..4);
        match self.rng.u8(..10) {
            0 => Write::start(claim),
            1 => Write::checkpoint(claim, Checkpoint::value(index, self.pick(&NAMES), b"1".to_vec())),
            2 => {
                let retryable = self.rng.bool();
                Write::checkpoint(claim, Checkpoint::error(index, self.pick(&NAMES), "oops", retryable))
            }
            3 => Write::complete(claim, format!("{}", self.rng.u8(..)).into_bytes()),
            4 => {
                let at = self.secs(-2, 5);
                Write::retry(claim, "try again", at)
            }
            5 => Write::fail(claim, "broken"),
            6 => {
                let wake = self.rng.bool().then(|| self.secs(-1, 8));
                Write::suspend(claim, wake)
            }
            7 => {
                let wake = self.rng.bool().then(|| self.secs(-1, 8));
                Write::wait_signal(claim, self.pick(&SIGNALS), wake)
            }
            8 => {
                // Children of names a claim can take, so that they run, wait and end too.
                let children = (0..self.rng.usize(0..=2))
                    .map(|_| {
                        let mut child = self.new_job();
                        self.pick(&NAMES[..3]).clone_into(&mut child.name);
                        child
                    })
                    .collect();
                let need = self.rng.u32(0..=2);
                Write::wait_children(claim, FanIn { index, need, tolerate: self.rng.u32(0..=1) }, children)
            }
            _ => {
                let signal = SignalId(self.rng.i64(1..=self.signals + 1));
                let name = format!("@signal:{}", self.pick(&SIGNALS));
                Write::receive(claim, signal, Checkpoint::value(index, name, b"2".to_vec()))
            }
        }
    }

    /// A worker and some runs to renew or release (usually its own).
    fn some_claims(&mut self) -> (String, Vec<Claim>) {
        let (worker, _) = self.claims[self.rng.usize(..self.claims.len())].clone();
        let claims = (0..self.rng.usize(1..=3)).map(|_| self.claims[self.rng.usize(..self.claims.len())].1).collect();
        (worker, claims)
    }

    fn filter(&mut self) -> JobFilter {
        let mut f = JobFilter::new().limit(self.rng.usize(0..6)).offset(self.rng.usize(0..3));
        if self.rng.bool() {
            f = f.status(JobStatus::ALL[self.rng.usize(..JobStatus::ALL.len())]);
        }
        if self.rng.u8(..3) == 0 {
            f = f.queue(self.pick(&QUEUES));
        }
        if self.rng.u8(..3) == 0 {
            f = f.name(self.pick(&NAMES));
        }
        if self.rng.u8(..3) == 0 {
            f = f.after(self.job_id());
        }
        if self.rng.u8(..6) == 0 {
            f = f.error_contains(self.pick(&["broken", "lost", "late", "x"]));
        }
        if self.rng.u8(..4) == 0 {
            f = f.parent(self.job_id());
        }
        f
    }

    /// Every record and every checkpoint.
    fn compare_everything(&self, reference: &MemoryStore, tested: &dyn Store) {
        let all = JobFilter::new().limit(usize::MAX);
        let records = self.check("every record", reference.list(&all), tested.list(&all));
        for record in records {
            let (id, n) = (record.id, usize::MAX);
            self.check("checkpoints of a job", reference.checkpoints(id, 0, n), tested.checkpoints(id, 0, n));
            self.check("signals of a job", reference.signals(id), tested.signals(id));
        }
    }
}
