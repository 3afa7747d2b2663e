//! The order workflow: four checkpointed steps per order, random payment failures, retries
//! that skip finished steps, and crash recovery.
//!
//! ```text
//! cargo run --release --example durable_workflow
//! cargo run --release --example durable_workflow -- --seed 7
//! cargo run --release --example durable_workflow -- --db orders.db --crash-after-step 2
//! cargo run --release --example durable_workflow -- --db orders.db     # resumes ORD-001 at step 3
//! cargo run --release --features sled --example durable_workflow -- --store sled
//! cargo run --release --example durable_workflow -- --trace --events  # spans and events
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use durable_jobs::{call, BoxError, Error, JobContext, JobId, JobOptions, JobStatus, Queue, Store};
use serde::{Deserialize, Serialize};

#[derive(Parser, Debug)]
#[command(about = "Order workflow with checkpointed steps (durable-jobs flagship example)")]
struct Args {
    /// Seed for the simulated payment failures (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Storage backend: sqlite or sled (sled needs `--features sled`).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "sled"])]
    store: String,
    /// Database to use and keep: a file for sqlite, a directory for sled (default: a fresh
    /// temporary one).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Abort the process right after step K (1-4) of ORD-001 is checkpointed, to show recovery.
    #[arg(long, value_name = "K", requires = "db", value_parser = clap::value_parser!(u32).range(1..=4))]
    crash_after_step: Option<u32>,
    /// Probability that a payment attempt fails.
    #[arg(long, default_value_t = 0.3)]
    failure_rate: f64,
    /// Print the `tracing` spans as they close: a `job` span per attempt, a `step` span per
    /// step (with `replayed=true` for the steps a retry skips), with their timing.
    #[arg(long)]
    trace: bool,
    /// Print the job events (started, retrying, completed...) as listeners see them.
    #[arg(long)]
    events: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: String,
    email: String,
    amount: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Payment {
    txn_id: String,
    amount: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Shipment {
    order_id: String,
    tracking: String,
}

/// How long the example waits for all orders before giving up.
const DEADLINE: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<bool, Box<dyn std::error::Error>> {
    if args.trace {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_target(false)
            .init();
    }
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..1_000_000));
    let temp = tempfile::tempdir()?;
    let path = args.db.clone().unwrap_or_else(|| temp.path().join("orders.db"));
    println!(
        "Database {} on {} (seed {seed}; rerun with --seed {seed} for the same failures)\n",
        path.display(),
        args.store
    );

    let queue = Queue::new(open_store(&args.store, &path)?);
    register_steps(&queue, seed, args.failure_rate)?;
    if args.events {
        queue.on_event(|e| println!("  (event: job {} {} attempt {}: {:?})", e.job, e.name, e.attempt, e.kind));
    }
    let crash_after = args.crash_after_step;
    queue.register("process-order", move |ctx: &JobContext, order: Order| process_order(ctx, &order, crash_after))?;

    let orders = [
        Order { id: "ORD-001".into(), email: "alice@example.com".into(), amount: 99.99 },
        Order { id: "ORD-002".into(), email: "bob@example.com".into(), amount: 149.50 },
        Order { id: "ORD-003".into(), email: "charlie@example.com".into(), amount: 299.00 },
    ];
    let mut ids = Vec::new();
    for order in &orders {
        let options = JobOptions::new()
            .retries(5)
            .backoff(Duration::from_millis(200), Duration::from_secs(2))
            .unique(format!("order:{}", order.id));
        let id = match queue.enqueue("process-order", order, options) {
            Ok(id) => {
                println!("Enqueued workflow {id} for order {}", order.id);
                id
            }
            Err(Error::Duplicate { existing, .. }) => {
                println!("Workflow {existing} for order {} is already in the database; resuming it", order.id);
                existing
            }
            Err(e) => return Err(e.into()),
        };
        ids.push(id);
    }

    // Ctrl-C (or SIGTERM) stops gracefully: running steps are told, finish or are handed back,
    // and nothing is charged. Without the handler, the signal would be a crash (also safe: the
    // next run resumes every order after its last checkpoint).
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;

    println!("\nStarting worker...\n");
    let worker = queue.worker().concurrency(2).start()?;
    let started = Instant::now();
    let finished = |id| queue.job(id).ok().flatten().is_some_and(|info| info.status.is_terminal());
    while let Some(&id) = ids.iter().find(|&&id| !finished(id)) {
        if interrupted.load(Ordering::SeqCst) {
            println!("\nInterrupted: stopping gracefully; run again to resume where it stopped");
            break;
        }
        if started.elapsed() >= DEADLINE {
            break;
        }
        let _ = queue.wait(id, Duration::from_millis(100));
    }
    worker.shutdown();
    print_summary(&queue, &orders, &ids, interrupted.load(Ordering::SeqCst))
}

fn open_store(kind: &str, path: &std::path::Path) -> Result<Box<dyn Store>, Box<dyn std::error::Error>> {
    let _ = path; // unused in a build without a store
    match kind {
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(Box::new(durable_jobs::sqlite::SqliteStore::open(path)?)),
        #[cfg(feature = "sled")]
        "sled" => Ok(Box::new(durable_jobs::sled::SledStore::open(path)?)),
        other => Err(format!("this build has no {other} store: rebuild with `--features {other}`").into()),
    }
}

fn register_steps(queue: &Queue, seed: u64, failure_rate: f64) -> Result<(), Error> {
    queue.register("validate-order", |_: &JobContext, order: Order| -> Result<Order, Error> {
        println!("  [Step 1] Validating order {}...", order.id);
        pause(100);
        if order.amount <= 0.0 {
            return Err(Error::permanent(format!("order {} has no amount", order.id)));
        }
        println!("  [Step 1] Order {} validated", order.id);
        Ok(order)
    })?;
    queue.register("charge-payment", move |ctx: &JobContext, order: Order| -> Result<Payment, BoxError> {
        println!("  [Step 2] Charging payment for order {} (${:.2})...", order.id, order.amount);
        pause(200);
        // The same seed, order and attempt always give the same outcome, whatever the timing.
        let mut rng = fastrand::Rng::with_seed(seed ^ hash(&order.id) ^ u64::from(ctx.attempt()).rotate_left(32));
        if rng.f64() < failure_rate {
            println!("  [Step 2] Payment failed for order {}: card processor timeout (will retry)", order.id);
            // A retryable error: the workflow fails this attempt and is retried after a backoff;
            // step 1's checkpoint spares it on the next attempt.
            return Err("card processor timeout".into());
        }
        let payment =
            Payment { txn_id: format!("txn_{}", rng.u64(1_000_000_000..10_000_000_000)), amount: order.amount };
        println!("  [Step 2] Payment successful: {}", payment.txn_id);
        Ok(payment)
    })?;
    queue.register("ship-order", move |_: &JobContext, order: Order| -> Result<Shipment, Error> {
        println!("  [Step 3] Shipping order {}...", order.id);
        pause(150);
        let tracking = format!("TRACK{:06}", fastrand::Rng::with_seed(seed ^ hash(&order.id)).u32(..1_000_000));
        println!("  [Step 3] Order shipped: {tracking}");
        Ok(Shipment { order_id: order.id, tracking })
    })?;
    queue.register("send-confirmation", |_: &JobContext, (email, shipment): (String, Shipment)| -> Result<(), Error> {
        println!("  [Step 4] Sending confirmation to {email}...");
        pause(100);
        println!("  [Step 4] Confirmation sent ({} via {})", shipment.order_id, shipment.tracking);
        Ok(())
    })
}

/// The workflow: each `call` runs a step once and checkpoints its result; on a retry the
/// finished steps return their checkpoint without running (and print nothing).
fn process_order(ctx: &JobContext, order: &Order, crash_after: Option<u32>) -> Result<(), Error> {
    let crash_point = |step: u32| {
        if crash_after == Some(step) && order.id == "ORD-001" && ctx.attempt() == 1 {
            println!("\n!!! Crashing the process after step {step} of {} (its checkpoint is committed) !!!", order.id);
            std::process::abort();
        }
    };
    match ctx.attempt() {
        1 => println!("=== Processing Order {} ===", order.id),
        n => println!("=== Processing Order {} (attempt {n}, finished steps are skipped) ===", order.id),
    }
    let order: Order = call(ctx, "validate-order", order)?;
    crash_point(1);
    let payment: Payment = call(ctx, "charge-payment", &order)?;
    crash_point(2);
    let shipment: Shipment = call(ctx, "ship-order", &order)?;
    crash_point(3);
    call::<()>(ctx, "send-confirmation", &(order.email.clone(), shipment))?;
    crash_point(4);
    println!("=== Order {} Complete (paid {}) ===", order.id, payment.txn_id);
    Ok(())
}

fn print_summary(
    queue: &Queue,
    orders: &[Order],
    ids: &[JobId],
    interrupted: bool,
) -> Result<bool, Box<dyn std::error::Error>> {
    println!("\nSummary");
    println!("  {:<8}  {:<10}  {:>8}  {:>11}", "order", "status", "attempts", "checkpoints");
    let mut all_completed = true;
    for (order, &id) in orders.iter().zip(ids) {
        let info = queue.job(id)?.ok_or(Error::NotFound { job: id })?;
        let checkpoints = queue.checkpoints(id)?.len();
        println!("  {:<8}  {:<10}  {:>8}  {:>11}", order.id, info.status, info.attempt, checkpoints);
        all_completed &= info.status == JobStatus::Completed;
    }
    if interrupted && !all_completed {
        println!("\nStopped before every order completed; run again with the same --db to resume.");
    } else if !all_completed {
        println!("\nNot every order completed within {} s.", DEADLINE.as_secs());
    }
    Ok(all_completed)
}

fn pause(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn hash(s: &str) -> u64 {
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
