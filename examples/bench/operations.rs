//! What running it in production costs the hot path: W3 and W4 with a schedule firing, limits
//! set high and retention on, against the same workloads without them, alternated in one run
//! (medians of three each); and W6r: a million jobs through a table with 1 s retention, which
//! deletes as fast as the drain completes.

use std::time::{Duration, Instant};

use durable_jobs::{JobOptions, Limit, Queue, Retention, Schedule, WorkerBuilder};

use super::{progress, row, Bench, Res, Row};

/// A schedule firing every second (a job the worker runs too, so that the drain ends) and
/// limits far above the workload on the queue and the names; retention is the worker's part.
fn switch_on(queue: &Queue) -> Res<()> {
    queue.schedule("tick", Schedule::every(Duration::from_secs(1)), "noop", "tick", JobOptions::new())?;
    queue.set_limit(Limit::queue("default").per_second(10_000_000).max_running(100_000))?;
    queue.set_limit(Limit::name("step").per_second(10_000_000).max_running(100_000).by_key(true))?;
    Ok(())
}

/// Retention on as a deployment has it (default ages), looking every second instead of every
/// minute so that its rounds run during the workload.
fn with_retention(w: WorkerBuilder) -> WorkerBuilder {
    w.retention(Retention::default().every(Duration::from_secs(1)))
}

/// Retention deleting everything that finished more than a second ago: as fast as the drain.
fn deleting(w: WorkerBuilder) -> WorkerBuilder {
    w.retention(Retention::default().completed(Duration::from_secs(1)).every(Duration::from_secs(1)))
}

fn without(w: WorkerBuilder) -> WorkerBuilder {
    w.retention(Retention::keep_forever())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl Bench {
    pub(super) fn ops(&self, jobs: usize, flows: usize) -> Res<Vec<Row>> {
        let (mut drain, mut steps) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
        for round in 1..=3 {
            progress(
                "ops",
                &format!("round {round} of 3: W3 ({jobs} jobs) and W4 ({flows} workflows), without then with"),
            );
            drain.0.push(Self::drain_with(&self.queue(&self.path("ops-off"))?, jobs, 16, without)?);
            let queue = self.queue(&self.path("ops-on"))?;
            switch_on(&queue)?;
            drain.1.push(Self::drain_with(&queue, jobs, 16, with_retention)?);
            steps.0.push(Self::flows(&self.queue(&self.path("ops-off"))?, flows, without)?);
            let queue = self.queue(&self.path("ops-on"))?;
            switch_on(&queue)?;
            steps.1.push(Self::flows(&queue, flows, with_retention)?);
        }
        let (off, on) = (median(drain.0), median(drain.1));
        let (flows_off, flows_on) = (median(steps.0), median(steps.1));
        let what = "with a schedule, limits set high, retention on; vs without";
        Ok(vec![
            row("ops", &format!("W3 drain, concurrency 16, {what}"), on, "jobs/s", Some(off), "≥ 90 % of without"),
            row(
                "ops",
                &format!("W4 workflow steps, {what}"),
                flows_on,
                "steps/s",
                Some(flows_off),
                "≥ 90 % of without",
            ),
        ])
    }

    /// W6r: `n` jobs drained through one table while retention deletes what finished more than
    /// a second ago; the rate against a plain drain of the same jobs, and the rows left at the
    /// end of the drain.
    pub(super) fn w6r(&self, n: usize) -> Res<Vec<Row>> {
        progress("W6r", &format!("drain {n} jobs with 1 s retention, then {n} without"));
        let queue = self.queue(&self.path("w6r"))?;
        let rate = Self::drain_with(&queue, n, 2, deleting)?;
        let left = queue.counts()?.total().total();
        let plain = Self::drain_with(&self.queue(&self.path("w6r-plain"))?, n, 2, without)?;
        let started = Instant::now();
        let worker = deleting(queue.worker()).start()?;
        while queue.counts()?.total().total() > 0 && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(200));
        }
        let emptied = started.elapsed().as_secs_f64();
        worker.shutdown();
        Ok(vec![
            row(
                "W6r",
                &format!("drain {n} jobs, 1 s retention running, vs without"),
                rate,
                "jobs/s",
                Some(plain),
                "≥ 80 % of without",
            ),
            row(
                "W6r",
                &format!("rows left when the drain ended (emptied {emptied:.1} s later)"),
                left as f64,
                "rows",
                None,
                "bounded: about 1 s of jobs",
            ),
        ])
    }
}
