//! W8–W10: durable waits. Workflows that sleep hold no thread (how late each wakes); a fan-out
//! of children to its fan-in; a signal's round trip to the workflow waiting for it.

use std::time::{Duration, Instant, SystemTime};

use durable_jobs::{fan_out, wait_signal, Child, Error, FanInStrategy, JobContext, JobOptions, JobStatus, Queue};

use super::{progress, row, system, Bench, Res, Row};

fn micros(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_micros()).unwrap_or(u64::MAX)
}

impl Bench {
    /// W8: `n` workflows start, each sleeps until its own time (100 ms to 1 s after a head
    /// start of 2 s plus 0.1 ms per workflow, in which all of them start and suspend) and on
    /// waking reports how late it is; also the threads and memory the process adds while they
    /// sleep.
    pub(super) fn w8(&self, n: usize) -> Res<Vec<Row>> {
        progress("W8", &format!("{n} workflows asleep at once, waking 100 ms to 1 s apart: lateness"));
        let queue = Queue::new(self.open(&self.path("w8"))?);
        let (tx, rx) = crossbeam_channel::unbounded::<f64>();
        queue.register("nap", move |ctx: &JobContext, until_us: u64| -> Result<(), Error> {
            let until = SystemTime::UNIX_EPOCH + Duration::from_micros(until_us);
            ctx.sleep_until(until)?;
            let _ = tx.send((micros(SystemTime::now()) as f64 - until_us as f64) / 1000.0);
            Ok(())
        })?;
        let (threads_before, rss_before) = (system::threads(), system::rss_mib());
        let worker = queue.worker().concurrency(4).start()?;
        // A head start in which every workflow starts and falls asleep.
        let head_start = Duration::from_secs(2) + Duration::from_micros(100) * u32::try_from(n).unwrap_or(u32::MAX);
        let base = SystemTime::now() + head_start;
        let mut rng = fastrand::Rng::with_seed(8);
        let wakes: Vec<u64> = (0..n).map(|_| micros(base + Duration::from_millis(rng.u64(100..=1000)))).collect();
        for chunk in wakes.chunks(1000) {
            queue.enqueue_batch("nap", chunk, JobOptions::new())?;
        }
        while queue.counts()?.total().waiting < n as u64 {
            if SystemTime::now() > base {
                return Err("the workflows took longer than the head start to fall asleep".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (threads_asleep, rss_asleep) = (system::threads(), system::rss_mib());
        let late: Result<Vec<f64>, _> = (0..n).map(|_| rx.recv_timeout(Duration::from_secs(60))).collect();
        worker.shutdown();
        let mut late = late?;
        late.sort_by(f64::total_cmp);
        let pct = |p: f64| late[((late.len() as f64 * p) as usize).min(late.len() - 1)];
        Ok(vec![
            row("W8", "sleep wake-up lateness p50", pct(0.50), "ms", None, "within a ms or two"),
            row("W8", "sleep wake-up lateness p99", pct(0.99), "ms", None, "≤ 5 ms"),
            row(
                "W8",
                &format!("threads added while {n} sleep (a pool of 4)"),
                threads_asleep.saturating_sub(threads_before) as f64,
                "threads",
                None,
                "the pool's own, none per sleeper",
            ),
            row(
                "W8",
                &format!("memory added while {n} sleep (RSS)"),
                (rss_asleep - rss_before).max(0.0),
                "MiB",
                None,
                "≤ 50 MiB",
            ),
        ])
    }

    /// W9: one workflow fans out `n` no-op children and waits for all of them (CollectAll):
    /// children per second from the enqueue of the parent to its completion, next to a plain
    /// drain of `n` no-op jobs with the same pool (concurrency 16) in the same run.
    pub(super) fn w9(&self, n: usize) -> Res<Vec<Row>> {
        progress("W9", &format!("a plain drain of {n} jobs, concurrency 16 (the comparison)"));
        let plain = Self::drain(&self.queue(&self.path("w9d"))?, n, 16)?;
        progress("W9", &format!("a fan-out of {n} no-op children to its fan-in, concurrency 16"));
        let queue = self.queue(&self.path("w9"))?;
        queue.register("fan", |ctx: &JobContext, n: u32| -> Result<usize, Error> {
            let children = (0..n).map(|_| Child::new("noop", &super::ARGS)).collect();
            Ok(fan_out::<serde_json::Value>(ctx, children, FanInStrategy::CollectAll)?.len())
        })?;
        let worker = queue.worker().concurrency(16).start()?;
        let started = Instant::now();
        let id = queue.enqueue("fan", &u32::try_from(n)?, JobOptions::new())?;
        let info = queue.wait(id, Duration::from_secs(600))?;
        let elapsed = started.elapsed();
        worker.shutdown();
        if info.status != JobStatus::Completed || queue.result::<usize>(id)? != n {
            return Err(format!("the fan-out did not complete: {info:?}").into());
        }
        let rate = n as f64 / elapsed.as_secs_f64();
        Ok(vec![row(
            "W9",
            &format!("fan-out of {n} no-op children to fan-in (raw: a plain drain, same pool)"),
            rate,
            "children/s",
            Some(plain),
            "≥ 50 % of W3",
        )])
    }

    /// W10: `n` workflows wait for a signal, one at a time: the time from `Queue::signal` to
    /// the waiting handler resumed with the payload, in-process (pool of 4).
    pub(super) fn w10(&self, n: usize) -> Res<Vec<Row>> {
        progress("W10", &format!("{n} signal round trips: signal sent → waiting workflow resumed"));
        let queue = Queue::new(self.open(&self.path("w10"))?);
        let (tx, rx) = crossbeam_channel::unbounded::<Instant>();
        queue.register("await", move |ctx: &JobContext, (): ()| -> Result<(), Error> {
            let (): () = wait_signal(ctx, "go")?;
            let _ = tx.send(Instant::now());
            Ok(())
        })?;
        let worker = queue.worker().concurrency(4).start()?;
        let ids = queue.enqueue_batch("await", &vec![(); n], JobOptions::new())?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while queue.counts()?.total().waiting < n as u64 {
            if Instant::now() > deadline {
                return Err("the workflows did not all start waiting within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut trips = Vec::with_capacity(n);
        for id in ids {
            let sent = Instant::now();
            queue.signal(id, "go", &())?;
            let resumed = rx.recv_timeout(Duration::from_secs(10))?;
            trips.push(resumed.saturating_duration_since(sent).as_secs_f64() * 1000.0);
        }
        worker.shutdown();
        trips.sort_by(f64::total_cmp);
        let pct = |p: f64| trips[((trips.len() as f64 * p) as usize).min(trips.len() - 1)];
        Ok(vec![
            row("W10", "signal round trip p50 (signal → handler resumed)", pct(0.50), "ms", None, "≤ 1 ms"),
            row("W10", "signal round trip p99", pct(0.99), "ms", None, "–"),
        ])
    }
}
