//! The benchmark program: the README's workloads ("Performance") against one store, each next to the
//! raw limit of the same durable writes measured in the same run (SQLite), and the ratio.
//!
//! ```text
//! cargo run --release --example bench                                   # SQLite, Durability::Full
//! cargo run --release --example bench -- --durability normal --json
//! cargo run --release --features sled --example bench -- --store sled
//! cargo run --release --example bench -- --quick --only W3,W5,idle       # smaller, a subset
//! ```

mod operations;
mod recovery;
mod system;
mod timing;
mod waits;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use durable_jobs::store::faulty::FaultyStore;
use durable_jobs::{call, Error, JobContext, JobId, JobOptions, Queue, Store, WorkerBuilder};
use serde::Serialize;

#[derive(Parser, Debug, Clone)]
#[command(about = "durable-jobs benchmarks (see the README, Performance)")]
struct Args {
    /// sqlite or sled (sled needs `--features sled`).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "sled"])]
    store: String,
    /// SQLite durability: full (fsync per commit) or normal.
    #[arg(long, default_value = "full", value_parser = ["full", "normal"])]
    durability: String,
    /// Print one JSON object per workload instead of a table.
    #[arg(long)]
    json: bool,
    /// Smaller sizes (a tenth), for a quick look.
    #[arg(long)]
    quick: bool,
    /// Run only these workloads, e.g. `W1,W3`.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Directory for the databases (default: a temporary directory on the real disk).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// One line of the results.
#[derive(Debug, Serialize)]
struct Row {
    id: &'static str,
    workload: String,
    ours: f64,
    unit: &'static str,
    raw: Option<f64>,
    ratio: Option<f64>,
    target: &'static str,
}

const ARGS: &str = "user4242@example.com welcome_v2 en-US";

fn main() -> ExitCode {
    if let Ok(dir) = std::env::var("DJ_BENCH_CHILD") {
        return recovery::recovery_child(Path::new(&dir));
    }
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn run(args: &Args) -> Res<()> {
    let temp = match &args.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir_in(std::env::current_dir()?)?,
    };
    let bench = Bench { args: args.clone(), dir: temp.path().to_path_buf(), n: AtomicUsize::new(0) };
    let scale = if args.quick { 10 } else { 1 };
    let mut rows = Vec::new();
    let want = |id: &str| args.only.is_empty() || args.only.iter().any(|o| o.eq_ignore_ascii_case(id));
    eprintln!("durable-jobs bench: store {} ({}), databases in {}", args.store, args.durability, temp.path().display());
    if want("W1") {
        rows.extend(bench.w1(5_000 / scale)?);
    }
    if want("W2") {
        rows.push(bench.w2(200_000 / scale)?);
    }
    if want("W3") {
        rows.extend(bench.w3(100_000 / scale)?);
    }
    if want("W4") {
        rows.push(bench.w4(10_000 / scale)?);
    }
    if want("W5") {
        rows.extend(bench.w5(200 / scale.min(4))?);
    }
    if want("W5d") {
        rows.extend(bench.w5d(10_000 / scale)?);
    }
    if want("W6") {
        rows.extend(bench.w6(1_000_000 / scale)?);
    }
    if want("W7") {
        rows.push(bench.w7()?);
    }
    if want("W8") {
        rows.extend(bench.w8(10_000 / scale)?);
    }
    if want("W9") {
        rows.extend(bench.w9(10_000 / scale)?);
    }
    if want("W10") {
        rows.extend(bench.w10(200 / scale.min(4))?);
    }
    if want("ops") {
        rows.extend(bench.ops(100_000 / scale, 10_000 / scale)?);
    }
    if want("W6r") {
        rows.extend(bench.w6r(1_000_000 / scale)?);
    }
    if want("idle") {
        rows.extend(bench.idle(if args.quick { 2 } else { 10 })?);
    }
    print(&rows, args.json)?;
    Ok(())
}

fn print(rows: &[Row], json: bool) -> Res<()> {
    if json {
        for row in rows {
            println!("{}", serde_json::to_string(row)?);
        }
        return Ok(());
    }
    println!("\n| id | workload | ours | raw limit | ratio | target |");
    println!("|----|----------|-----:|----------:|------:|--------|");
    for r in rows {
        let raw = r.raw.map_or_else(|| "–".to_owned(), |v| format!("{} {}", human(v), r.unit));
        let ratio = r.ratio.map_or_else(|| "–".to_owned(), |v| format!("{:.0} %", v * 100.0));
        println!("| {} | {} | {} {} | {raw} | {ratio} | {} |", r.id, r.workload, human(r.ours), r.unit, r.target);
    }
    Ok(())
}

fn human(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.1}M", v / 1_000_000.0)
    } else if v >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

struct Bench {
    args: Args,
    dir: PathBuf,
    n: AtomicUsize,
}

fn progress(id: &str, what: &str) {
    eprintln!("[{id}] {what}...");
}

impl Bench {
    /// A fresh database path.
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-{}", self.n.fetch_add(1, Ordering::Relaxed)))
    }

    fn sqlite_options(&self) -> durable_jobs::sqlite::SqliteOptions {
        let durability = if self.args.durability == "normal" {
            durable_jobs::sqlite::Durability::Normal
        } else {
            durable_jobs::sqlite::Durability::Full
        };
        durable_jobs::sqlite::SqliteOptions::new().durability(durability)
    }

    fn open(&self, path: &Path) -> Res<Box<dyn Store>> {
        open_store(&self.args.store, path, self.sqlite_options())
    }

    fn queue(&self, path: &Path) -> Res<Queue> {
        let queue = Queue::new(self.open(path)?);
        register(&queue)?;
        Ok(queue)
    }

    /// The raw limit, where the store is SQLite.
    fn raw(
        &self,
        f: impl FnOnce(&Path, &durable_jobs::sqlite::SqliteOptions) -> Result<f64, durable_jobs::StoreError>,
    ) -> Res<Option<f64>> {
        if self.args.store != "sqlite" {
            return Ok(None);
        }
        Ok(Some(f(&self.path("raw"), &self.sqlite_options())?))
    }

    fn w1(&self, n: usize) -> Res<Vec<Row>> {
        progress("W1", &format!("enqueue {n} jobs one per call, 1 producer"));
        let raw = self.raw(|p, o| durable_jobs::sqlite::limits::inserts(p, o, 1, n))?;
        let queue = self.queue(&self.path("w1"))?;
        let started = Instant::now();
        for _ in 0..n {
            queue.enqueue("noop", ARGS, JobOptions::new())?;
        }
        let one = n as f64 / started.elapsed().as_secs_f64();
        progress("W1", &format!("enqueue {} jobs one per call, 8 producers", 4 * n));
        let queue = self.queue(&self.path("w1x8"))?;
        let started = Instant::now();
        std::thread::scope(|s| -> Res<()> {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let q = queue.clone();
                    s.spawn(move || (0..n / 2).try_for_each(|_| q.enqueue("noop", ARGS, JobOptions::new()).map(|_| ())))
                })
                .collect();
            for h in handles {
                h.join().map_err(|_| "producer panicked")??;
            }
            Ok(())
        })?;
        let eight = (4 * n) as f64 / started.elapsed().as_secs_f64();
        Ok(vec![
            row("W1", "enqueue, 1 producer", one, "jobs/s", raw, "≥ 85 % of raw 1 insert/commit"),
            row("W1", "enqueue, 8 producers", eight, "jobs/s", raw, "≥ 3× raw 1 insert/commit"),
        ])
    }

    fn w2(&self, n: usize) -> Res<Row> {
        progress("W2", &format!("enqueue_batch of 100, {n} jobs"));
        let raw = self.raw(|p, o| durable_jobs::sqlite::limits::inserts(p, o, 100, n))?;
        let queue = self.queue(&self.path("w2"))?;
        let batch = vec![ARGS; 100];
        let started = Instant::now();
        for _ in 0..n / 100 {
            queue.enqueue_batch("noop", &batch, JobOptions::new())?;
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        Ok(row("W2", "enqueue_batch of 100", rate, "jobs/s", raw, "≥ 75 % of raw 100-row batches"))
    }

    /// Enqueues `n` no-op jobs, drains them with `concurrency` threads; jobs per second.
    fn drain(queue: &Queue, n: usize, concurrency: usize) -> Res<f64> {
        Self::drain_with(queue, n, concurrency, |w| w)
    }

    /// As [`drain`](Self::drain), with the worker's settings changed by `configure`.
    fn drain_with(
        queue: &Queue,
        n: usize,
        concurrency: usize,
        configure: impl FnOnce(WorkerBuilder) -> WorkerBuilder,
    ) -> Res<f64> {
        let batch = vec![ARGS; 1000];
        let mut tail = Vec::new();
        for _ in 0..n.div_ceil(1000) {
            tail = queue.enqueue_batch("noop", &batch, JobOptions::new())?;
        }
        let started = Instant::now();
        let worker = configure(queue.worker().concurrency(concurrency)).start()?;
        let elapsed = wait_drained(queue, &tail, started)?;
        let rate = n.div_ceil(1000) as f64 * 1000.0 / elapsed.as_secs_f64();
        worker.shutdown();
        Ok(rate)
    }

    fn w3(&self, n: usize) -> Res<Vec<Row>> {
        let raw = self.raw(|p, o| durable_jobs::sqlite::limits::claim_complete(p, o, 100, n))?;
        let mut rows = Vec::new();
        for concurrency in [2, 16] {
            progress("W3", &format!("drain {n} jobs, concurrency {concurrency}"));
            let rate = Self::drain(&self.queue(&self.path("w3"))?, n, concurrency)?;
            rows.push(row(
                "W3",
                &format!("drain, concurrency {concurrency}"),
                rate,
                "jobs/s",
                raw,
                "≥ 60k/s, ≥ 70 % of raw claim+complete",
            ));
        }
        Ok(rows)
    }

    fn w4(&self, n: usize) -> Res<Row> {
        progress("W4", &format!("{n} workflows x 5 steps, concurrency 16"));
        let rate = Self::flows(&self.queue(&self.path("w4"))?, n, |w| w)?;
        Ok(row("W4", "workflow steps (5 per job), concurrency 16", rate, "steps/s", None, "≥ 30k steps/s"))
    }

    /// Runs `n` five-step workflows with 16 threads, the worker's settings changed by
    /// `configure`; steps per second.
    fn flows(queue: &Queue, n: usize, configure: impl FnOnce(WorkerBuilder) -> WorkerBuilder) -> Res<f64> {
        let ids = queue.enqueue_batch("flow", &vec![(); n], JobOptions::new())?;
        let started = Instant::now();
        let worker = configure(queue.worker().concurrency(16)).start()?;
        let tail = &ids[ids.len().saturating_sub(1000)..];
        let rate = (5 * n) as f64 / wait_drained(queue, tail, started)?.as_secs_f64();
        worker.shutdown();
        Ok(rate)
    }

    fn w6(&self, n: usize) -> Res<Vec<Row>> {
        let finished = n as u64;
        let path = self.path("w6");
        let drain = n / 10;
        let mut rows = Vec::new();
        if self.args.store == "sqlite" {
            progress("W6", &format!("drain {drain} jobs with {finished} finished jobs in the table"));
            durable_jobs::sqlite::limits::fill_finished(&path, &self.sqlite_options(), finished)?;
            let with_history = Self::drain(&self.queue(&path)?, drain, 2)?;
            let empty = Self::drain(&self.queue(&self.path("w6e"))?, drain, 2)?;
            rows.push(Row {
                id: "W6",
                workload: format!("drain with {} finished rows, vs empty", human(finished as f64)),
                ours: with_history,
                unit: "jobs/s",
                raw: Some(empty),
                ratio: Some(with_history / empty),
                target: "≥ 80 % of W3",
            });
        }
        progress("W6", &format!("peak memory while draining {n} jobs"));
        let before = system::peak_rss_mib();
        let rate = Self::drain(&self.queue(&self.path("w6m"))?, n, 2)?;
        let peak = system::peak_rss_mib();
        rows.push(Row {
            id: "W6",
            workload: format!("peak RSS draining {} jobs ({} jobs/s)", human(n as f64), human(rate)),
            ours: peak,
            unit: "MiB",
            raw: None,
            ratio: None,
            target: if before < 100.0 {
                "≤ 100 MiB"
            } else {
                "≤ 100 MiB (process peak includes earlier workloads)"
            },
        });
        Ok(rows)
    }

    /// A worker with nothing to do: store calls per second and CPU use, over `secs` seconds.
    fn idle(&self, secs: u64) -> Res<Vec<Row>> {
        progress("idle", &format!("a worker with nothing to do, default settings, {secs} s"));
        let store = Arc::new(FaultyStore::new(self.open(&self.path("idle"))?));
        let queue = Queue::new(store.clone());
        register(&queue)?;
        let worker = queue.worker().start()?;
        std::thread::sleep(Duration::from_secs(1));
        let (calls, cpu, started) = (store.calls(), system::cpu_seconds(), Instant::now());
        std::thread::sleep(Duration::from_secs(secs));
        let elapsed = started.elapsed().as_secs_f64();
        let rate = (store.calls() - calls) as f64 / elapsed;
        let core = (system::cpu_seconds() - cpu) / elapsed * 100.0;
        worker.shutdown();
        Ok(vec![
            row("idle", "idle worker: store calls", rate, "calls/s", None, "a few per second"),
            row("idle", "idle worker: CPU", core, "% of a core", None, "< 1 %"),
        ])
    }
}

fn row(id: &'static str, workload: &str, ours: f64, unit: &'static str, raw: Option<f64>, target: &'static str) -> Row {
    Row { id, workload: workload.to_owned(), ours, unit, raw, ratio: raw.map(|r| ours / r), target }
}

fn open_store(kind: &str, path: &Path, sqlite: durable_jobs::sqlite::SqliteOptions) -> Res<Box<dyn Store>> {
    match kind {
        "sqlite" => Ok(Box::new(durable_jobs::sqlite::SqliteStore::open_with(path, sqlite)?)),
        #[cfg(feature = "sled")]
        "sled" => Ok(Box::new(durable_jobs::sled::SledStore::open(path)?)),
        other => Err(format!("this build has no {other} store: rebuild with `--features {other}`").into()),
    }
}

/// The bench's handlers: a no-op job, a five-step workflow, and (in the parent) `stuck`.
fn register(queue: &Queue) -> Result<(), Error> {
    queue.register("noop", |_: &JobContext, _: String| Ok::<_, std::io::Error>(()))?;
    queue.register("step", |_: &JobContext, n: u32| Ok::<_, std::io::Error>(n + 1))?;
    queue.register("flow", |ctx: &JobContext, (): ()| -> Result<u32, Error> {
        let mut v = 0;
        for _ in 0..5 {
            v = call(ctx, "step", &v)?;
        }
        Ok(v)
    })?;
    queue.register("stuck", |_: &JobContext, (): ()| Ok::<_, std::io::Error>(()))
}

/// The time from `started` until every job is finished. Jobs are claimed in id order, so it
/// waits for the last ones (`tail`) by id, which is cheap, and then counts outside the clock,
/// because counting reads every row (half a second per million kept jobs) and would steal the
/// CPU being measured. Only if something earlier is still unfinished does the clock run on.
fn wait_drained(queue: &Queue, tail: &[JobId], started: Instant) -> Res<Duration> {
    for id in tail {
        queue.wait(*id, Duration::from_secs(3600))?;
    }
    let elapsed = started.elapsed();
    if queue.counts()?.total().unfinished() == 0 {
        return Ok(elapsed);
    }
    wait_all_done(queue)?;
    Ok(started.elapsed())
}

/// Waits until no job is pending or running. Counting scans the table, so it is done rarely
/// while many jobs remain (it would steal the CPU being measured) and often near the end.
fn wait_all_done(queue: &Queue) -> Res<()> {
    let started = Instant::now();
    loop {
        let live = queue.counts()?.total().unfinished();
        if live == 0 {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(3600) {
            return Err("jobs did not finish".into());
        }
        std::thread::sleep(Duration::from_micros((live * 10).clamp(500, 200_000)));
    }
}
