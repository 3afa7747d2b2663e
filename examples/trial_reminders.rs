//! Durable sleep: a hundred free trials, each a workflow that creates the account, sleeps until
//! the trial is nearly over, and sends a reminder. The sleeps hold no thread: two worker threads
//! serve all hundred, and the run takes about one sleep, not a hundred. A sleeping workflow is
//! `waiting` in the database; a process killed and restarted meanwhile wakes it at the same
//! deadline without creating the account again (the README's G12).
//!
//! ```text
//! cargo run --release --example trial_reminders
//! cargo run --release --example trial_reminders -- --trials 1000 --trial-ms 3000
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use durable_jobs::sqlite::SqliteStore;
use durable_jobs::{Error, JobContext, JobOptions, JobStatus, Queue};

mod common;

#[derive(Parser, Debug)]
#[command(about = "Free-trial reminders with durable sleep")]
struct Args {
    /// How many users sign up.
    #[arg(long, default_value_t = 100)]
    trials: u32,
    /// How long a trial lasts (the sleep), in milliseconds: a stand-in for fourteen days.
    #[arg(long, default_value_t = 1500)]
    trial_ms: u64,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let queue = Queue::new(SqliteStore::open(temp.path().join("trials.db"))?);
    let started = Instant::now();
    let trial = Duration::from_millis(args.trial_ms);
    queue.register("trial", move |ctx: &JobContext, user: u32| -> Result<(), Error> {
        ctx.step("create-account", || {
            if user < 3 {
                println!("{:>7.3}s  user {user}: account created, trial starts", started.elapsed().as_secs_f64());
            }
            Ok::<_, std::io::Error>(())
        })?;
        // Suspends the workflow (Error::Suspended, passed on by `?`) and frees the thread; the
        // handler runs again from the top when the trial is nearly over, and the step above
        // replays from its checkpoint instead of running again.
        ctx.sleep(trial)?;
        ctx.step("send-reminder", || {
            if user < 3 {
                println!("{:>7.3}s  user {user}: \"your trial ends tomorrow\" sent", started.elapsed().as_secs_f64());
            }
            Ok::<_, std::io::Error>(())
        })
    })?;
    let users: Vec<u32> = (0..args.trials).collect();
    let ids = queue.enqueue_batch("trial", &users, JobOptions::new())?;
    let stop = common::Stop::on_signals()?;
    let worker = queue.worker().concurrency(2).start()?;
    println!("{} trials of {trial:?} each on 2 worker threads (the first three users shown)", args.trials);

    let mut reported = None;
    loop {
        let total = queue.counts()?.total();
        if total.completed == u64::from(args.trials) {
            break;
        }
        if stop.requested() {
            println!("\nInterrupted: stopping gracefully (the trials still asleep stay in the database)");
            worker.shutdown();
            return Ok(());
        }
        if total.waiting > 0 && reported != Some(total.waiting) {
            let at = started.elapsed().as_secs_f64();
            println!("{at:>7.3}s  {} asleep, {} done", total.waiting, total.completed);
            reported = Some(total.waiting);
        }
        if started.elapsed() > trial + Duration::from_secs(60) {
            return Err("the trials did not finish in time".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = started.elapsed();
    worker.shutdown();

    let mut reminders = 0;
    for id in &ids {
        let info = queue.job(*id)?.ok_or("job vanished")?;
        let names: Vec<String> = queue.checkpoints(*id)?.into_iter().map(|c| c.name).collect();
        if info.status != JobStatus::Completed || names != ["create-account", "@sleep", "send-reminder"] {
            return Err(format!("job {id} ended {:?} with checkpoints {names:?}", info.status).into());
        }
        reminders += 1;
    }
    println!(
        "{reminders} reminders sent, each once, in {elapsed:.2?} (blocking sleeps on 2 threads would take {:.0?})",
        trial * args.trials / 2
    );
    Ok(())
}
