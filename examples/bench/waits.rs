//! W8: durable sleep. Workflows that sleep hold no thread; how late each wakes.

use std::time::{Duration, SystemTime};

use durable_jobs::{Error, JobContext, JobOptions, Queue};

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
}
