//! W5 (dispatch latency) and W5d (lateness of delayed jobs).

use std::time::{Duration, Instant, SystemTime};

use durable_jobs::{JobContext, JobOptions, Queue};

use super::{progress, row, Bench, Res, Row};

impl Bench {
    pub(super) fn w5(&self, samples: usize) -> Res<Vec<Row>> {
        progress("W5", &format!("latency enqueue -> handler start, {samples} samples 5 ms apart"));
        let queue = Queue::new(self.open(&self.path("w5"))?);
        let (tx, rx) = crossbeam_channel::unbounded::<Instant>();
        queue.register("ping", move |_: &JobContext, (): ()| -> Result<(), std::io::Error> {
            let _ = tx.send(Instant::now());
            Ok(())
        })?;
        let worker = queue.worker().concurrency(2).start()?;
        let mut latencies = Vec::with_capacity(samples);
        for _ in 0..samples {
            std::thread::sleep(Duration::from_millis(5));
            let before = Instant::now();
            queue.enqueue("ping", &(), JobOptions::new())?;
            let started = rx.recv_timeout(Duration::from_secs(10))?;
            latencies.push(started.duration_since(before).as_secs_f64() * 1000.0);
        }
        worker.shutdown();
        latencies.sort_by(f64::total_cmp);
        let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        Ok(vec![
            row("W5", "latency p50, idle worker", pct(0.50), "ms", None, "≤ 1 ms"),
            row("W5", "latency p99, idle worker", pct(0.99), "ms", None, "≤ 5 ms"),
        ])
    }

    /// W5d: `n` jobs with delays of 10 ms to 1 s, all enqueued ahead; how late each one's
    /// handler starts after its `run_at`.
    pub(super) fn w5d(&self, n: usize) -> Res<Vec<Row>> {
        progress("W5d", &format!("lateness of {n} jobs delayed 10 ms to 1 s, idle worker"));
        let queue = Queue::new(self.open(&self.path("w5d"))?);
        let (tx, rx) = crossbeam_channel::unbounded::<f64>();
        queue.register("due", move |_: &JobContext, due_us: u64| -> Result<(), std::io::Error> {
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            let late = now.as_secs_f64() - Duration::from_micros(due_us).as_secs_f64();
            let _ = tx.send(late * 1000.0);
            Ok(())
        })?;
        let worker = queue.worker().concurrency(4).start()?;
        // Every job is enqueued before the first comes due (8 producers, well under the 2 s head start).
        let base = SystemTime::now() + Duration::from_secs(2);
        std::thread::scope(|s| -> Res<()> {
            let producers: Vec<_> = (0..8)
                .map(|p| {
                    let q = queue.clone();
                    s.spawn(move || -> Result<(), durable_jobs::Error> {
                        let mut rng = fastrand::Rng::with_seed(p);
                        for _ in 0..n / 8 {
                            let at = base + Duration::from_millis(rng.u64(10..=1000));
                            let due = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
                            let due_us = u64::try_from(due.as_micros()).unwrap_or(u64::MAX);
                            q.enqueue("due", &due_us, JobOptions::new().run_at(at))?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for p in producers {
                p.join().map_err(|_| "producer panicked")??;
            }
            Ok(())
        })?;
        if SystemTime::now() > base {
            return Err("enqueueing took longer than the head start; lateness would be meaningless".into());
        }
        let mut late: Vec<f64> =
            (0..n / 8 * 8).map(|_| rx.recv_timeout(Duration::from_secs(60))).collect::<Result<_, _>>()?;
        worker.shutdown();
        late.sort_by(f64::total_cmp);
        let pct = |p: f64| late[((late.len() as f64 * p) as usize).min(late.len() - 1)];
        Ok(vec![
            row("W5d", "delayed jobs: lateness p50", pct(0.50), "ms", None, "within a ms or two"),
            row("W5d", "delayed jobs: lateness p99", pct(0.99), "ms", None, "within a ms or two"),
        ])
    }
}
