//! Criterion benches of workloads W1–W5 (README, "Performance"), each written once and run against
//! every enabled store, in the style of redb's `BenchDatabase`. `examples/bench.rs` runs the
//! full set with the raw limits and ratios; these track changes over time.
//!
//! `cargo bench --bench workloads [-- <filter>]`

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use durable_jobs::{call, Error, JobContext, JobOptions, Queue, Store};

/// A store the workloads run against.
trait BenchStore {
    /// Its name in the report.
    const NAME: &'static str;
    /// A fresh store in `dir`.
    fn open(dir: &Path) -> Box<dyn Store>;
}

struct SqliteFull;
impl BenchStore for SqliteFull {
    const NAME: &'static str = "sqlite-full";
    fn open(dir: &Path) -> Box<dyn Store> {
        Box::new(durable_jobs::sqlite::SqliteStore::open(dir.join("jobs.db")).expect("open sqlite"))
    }
}

struct SqliteNormal;
impl BenchStore for SqliteNormal {
    const NAME: &'static str = "sqlite-normal";
    fn open(dir: &Path) -> Box<dyn Store> {
        use durable_jobs::sqlite::{Durability, SqliteOptions, SqliteStore};
        let options = SqliteOptions::new().durability(Durability::Normal);
        Box::new(SqliteStore::open_with(dir.join("jobs.db"), options).expect("open sqlite"))
    }
}

#[cfg(feature = "sled")]
struct Sled;
#[cfg(feature = "sled")]
impl BenchStore for Sled {
    const NAME: &'static str = "sled";
    fn open(dir: &Path) -> Box<dyn Store> {
        Box::new(durable_jobs::sled::SledStore::open(dir.join("jobs")).expect("open sled"))
    }
}

const ARGS: &str = "user4242@example.com welcome_v2 en-US";
/// Jobs per W3 iteration.
const DRAIN: usize = 5000;
/// Workflows (of five steps) per W4 iteration.
const FLOWS: usize = 500;

/// A queue on a fresh store with the bench handlers; `done` counts finished no-op jobs.
fn queue<S: BenchStore>(dir: &Path, done: &Arc<AtomicUsize>) -> Queue {
    let queue = Queue::new(S::open(dir));
    let d = done.clone();
    queue
        .register("noop", move |_: &JobContext, _: String| -> Result<(), std::io::Error> {
            d.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .expect("register");
    queue.register("step", |_: &JobContext, n: u32| Ok::<_, std::io::Error>(n + 1)).expect("register");
    let d = done.clone();
    queue
        .register("flow", move |ctx: &JobContext, (): ()| -> Result<(), Error> {
            let mut v = 0;
            for _ in 0..5 {
                v = call(ctx, "step", &v)?;
            }
            d.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .expect("register");
    queue
}

fn wait_for(done: &AtomicUsize, n: usize) {
    while done.load(Ordering::Relaxed) < n {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Times `iters` runs, each on a fresh store: `fill` enqueues (not timed), then a worker of
/// `concurrency` threads runs until `n` jobs are done.
fn timed_runs<S: BenchStore>(iters: u64, concurrency: usize, n: usize, fill: impl Fn(&Queue)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let dir = tempfile::tempdir_in(".").expect("tempdir");
        let done = Arc::new(AtomicUsize::new(0));
        let q = queue::<S>(dir.path(), &done);
        fill(&q);
        let started = Instant::now();
        let worker = q.worker().concurrency(concurrency).start().expect("worker");
        wait_for(&done, n);
        total += started.elapsed();
        worker.shutdown();
    }
    total
}

fn workloads<S: BenchStore>(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(".").expect("tempdir");
    let done = Arc::new(AtomicUsize::new(0));
    let q = queue::<S>(dir.path(), &done);
    let mut group = c.benchmark_group(S::NAME);
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));

    group.throughput(Throughput::Elements(1));
    group.bench_function("W1 enqueue", |b| b.iter(|| q.enqueue("noop", ARGS, JobOptions::new()).expect("enqueue")));

    let batch = vec![ARGS; 100];
    group.throughput(Throughput::Elements(100));
    group.bench_function("W2 enqueue_batch 100", |b| {
        b.iter(|| q.enqueue_batch("noop", &batch, JobOptions::new()).expect("enqueue"));
    });

    group.throughput(Throughput::Elements(DRAIN as u64));
    group.bench_function("W3 drain 5000, concurrency 2", |b| {
        b.iter_custom(|iters| {
            timed_runs::<S>(iters, 2, DRAIN, |q| {
                for chunk in vec![ARGS; DRAIN].chunks(1000) {
                    q.enqueue_batch("noop", chunk, JobOptions::new()).expect("enqueue");
                }
            })
        });
    });

    group.throughput(Throughput::Elements(5 * FLOWS as u64));
    group.bench_function("W4 workflow steps, 500 x 5, concurrency 16", |b| {
        b.iter_custom(|iters| {
            timed_runs::<S>(iters, 16, FLOWS, |q| {
                q.enqueue_batch("flow", &[(); FLOWS], JobOptions::new()).expect("enqueue");
            })
        });
    });

    group.throughput(Throughput::Elements(1));
    let (tx, rx) = crossbeam_channel::unbounded::<Instant>();
    q.register("ping", move |_: &JobContext, (): ()| -> Result<(), std::io::Error> {
        let _ = tx.send(Instant::now());
        Ok(())
    })
    .expect("register");
    let worker = q.worker().concurrency(2).start().expect("worker");
    group.bench_function("W5 latency enqueue to handler start, idle worker", |b| {
        b.iter_batched(
            || std::thread::sleep(Duration::from_millis(2)),
            |()| {
                let before = Instant::now();
                q.enqueue("ping", &(), JobOptions::new()).expect("enqueue");
                let started = rx.recv().expect("ping");
                started.duration_since(before)
            },
            BatchSize::PerIteration,
        );
    });
    worker.shutdown();
    group.finish();
}

fn sqlite_full(c: &mut Criterion) {
    workloads::<SqliteFull>(c);
}

fn sqlite_normal(c: &mut Criterion) {
    workloads::<SqliteNormal>(c);
}

#[cfg(feature = "sled")]
fn sled(c: &mut Criterion) {
    workloads::<Sled>(c);
}

#[cfg(feature = "sled")]
criterion_group!(benches, sqlite_full, sqlite_normal, sled);
#[cfg(not(feature = "sled"))]
criterion_group!(benches, sqlite_full, sqlite_normal);
criterion_main!(benches);
