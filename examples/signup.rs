//! Durable signals: a sign-up workflow that creates the account, sends a welcome email, waits a
//! while, then waits for the user to click the confirmation link (a signal) with a timeout: if
//! the link is not clicked in time it sends a reminder and keeps waiting; once it is, the account
//! is activated. While it waits the workflow holds no thread; the waits survive restarts.
//!
//! The example plays the user too: a thread "clicks the link" (sends the signal) after a pause.
//! Alice clicks before her timeout; Bob is slow and gets a reminder first.
//!
//! ```text
//! cargo run --example signup
//! cargo run --example signup -- --timeout-ms 500 --bob-clicks-ms 1500
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use durable_jobs::sqlite::SqliteStore;
use durable_jobs::{wait_signal, wait_signal_timeout, Error, JobContext, JobOptions, JobStatus, Queue};
use serde::{Deserialize, Serialize};

mod common;

// Every option is a number of milliseconds, and says so on the command line.
#[allow(clippy::struct_field_names)]
#[derive(Parser, Debug)]
#[command(about = "A sign-up workflow that waits for a confirmation signal")]
struct Args {
    /// How long the workflow waits after the welcome email before it expects the click.
    #[arg(long, default_value_t = 200)]
    pause_ms: u64,
    /// How long it waits for the click before it sends a reminder.
    #[arg(long, default_value_t = 800)]
    timeout_ms: u64,
    /// When Alice clicks her link, after she signs up.
    #[arg(long, default_value_t = 400)]
    alice_clicks_ms: u64,
    /// When Bob clicks his link (after his reminder, with the defaults).
    #[arg(long, default_value_t = 1600)]
    bob_clicks_ms: u64,
}

/// The confirmation link's payload.
#[derive(Debug, Serialize, Deserialize)]
struct Confirmation {
    token: String,
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
    let queue = Queue::new(SqliteStore::open(temp.path().join("signup.db"))?);
    let started = Instant::now();
    let say = move |user: &str, what: &str| println!("{:>6.3}s  {user:<5}  {what}", started.elapsed().as_secs_f64());
    let (pause, timeout) = (Duration::from_millis(args.pause_ms), Duration::from_millis(args.timeout_ms));
    queue.register("signup", move |ctx: &JobContext, user: String| -> Result<String, Error> {
        ctx.step("create-account", || {
            say(&user, "account created");
            Ok::<_, std::io::Error>(())
        })?;
        ctx.step("send-welcome", || {
            say(&user, "welcome email sent, with the confirmation link");
            Ok::<_, std::io::Error>(())
        })?;
        // Durable waits suspend the workflow (`?` passes Error::Suspended on) and free the
        // thread; the handler replays from the top when the wait is over, and the steps above
        // return their recorded outcomes instead of running again.
        ctx.sleep(pause)?;
        let confirmation = if let Some(confirmation) = wait_signal_timeout(ctx, "confirmed", timeout)? {
            confirmation
        } else {
            ctx.step("send-reminder", || {
                say(&user, "no click yet: reminder sent");
                Ok::<_, std::io::Error>(())
            })?;
            wait_signal::<Confirmation>(ctx, "confirmed")?
        };
        ctx.step("activate", || {
            say(&user, &format!("link clicked (token {}): account activated", confirmation.token));
            Ok::<_, std::io::Error>(())
        })?;
        Ok(format!("{user} active"))
    })?;

    let stop = common::Stop::on_signals()?;
    let worker = queue.worker().concurrency(1).start()?;
    let alice = queue.enqueue("signup", "alice", JobOptions::new())?;
    let bob = queue.enqueue("signup", "bob", JobOptions::new())?;
    println!("two sign-ups on one worker thread; the users click their links from another thread");
    let clicker = {
        let queue = queue.clone();
        let clicks = [(alice, "alice", args.alice_clicks_ms), (bob, "bob", args.bob_clicks_ms)];
        std::thread::spawn(move || -> Result<(), Error> {
            let mut clicks = clicks.to_vec();
            clicks.sort_by_key(|c| c.2);
            for (id, user, at) in clicks {
                std::thread::sleep(Duration::from_millis(at).saturating_sub(started.elapsed()));
                say(user, "clicks the confirmation link (signal \"confirmed\")");
                queue.signal(id, "confirmed", &Confirmation { token: format!("{user}-{:04}", id.0) })?;
            }
            Ok(())
        })
    };
    let patience = Duration::from_millis(args.bob_clicks_ms.max(args.alice_clicks_ms) + 30_000);
    let (Some(a), Some(b)) = (stop.wait(&queue, alice, patience)?, stop.wait(&queue, bob, patience)?) else {
        worker.shutdown();
        return Ok(());
    };
    let results = [a, b];
    clicker.join().map_err(|_| "the clicking thread panicked")??;
    worker.shutdown();
    for info in &results {
        if info.status != JobStatus::Completed {
            return Err(format!("job {} ended {}: {:?}", info.id, info.status, info.last_error).into());
        }
    }
    let reminders = |id| -> Result<usize, Error> {
        Ok(queue.checkpoints(id)?.iter().filter(|c| c.name == "send-reminder").count())
    };
    println!(
        "both accounts active; reminders sent: alice {}, bob {}; attempts: alice {}, bob {}",
        reminders(alice)?,
        reminders(bob)?,
        results[0].attempt,
        results[1].attempt
    );
    Ok(())
}
