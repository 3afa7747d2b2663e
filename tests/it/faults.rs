//! S3: storage errors injected at every call of a workload (once, forever until healed, after a
//! commit, or a hang). No panic, no lost job, `Ok` only when committed, recovery after.

use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_jobs::store::faulty::{Fault, FaultyStore};
use durable_jobs::store::Store;
use durable_jobs::{call, Error, JobContext, JobId, JobOptions, JobStatus, Queue};

use crate::support::{Backend, Ledger, PATIENCE};

/// The highest call number faulted; the workload makes more calls than this.
const CALLS: u64 = 24;

fn register(queue: &Queue, ledger: &Ledger) {
    let l = ledger.clone();
    queue
        .register("plain", move |ctx: &JobContext, (): ()| -> Result<(), std::io::Error> {
            l.record(format!("plain {}", ctx.id()));
            Ok(())
        })
        .unwrap();
    let l = ledger.clone();
    queue
        .register("step", move |ctx: &JobContext, n: u32| -> Result<u32, std::io::Error> {
            l.record(format!("step {n} {}", ctx.id()));
            Ok(n)
        })
        .unwrap();
    queue
        .register("flow", |ctx: &JobContext, (): ()| -> Result<u32, Error> {
            let a: u32 = call(ctx, "step", &1)?;
            let b: u32 = call(ctx, "step", &2)?;
            Ok(a + b)
        })
        .unwrap();
}

/// Runs the workload with `fault` injected; returns how many calls the fault hit and how many
/// jobs were accepted (and then checked).
fn run_with(db: &dyn Backend, fault: Fault) -> (u64, usize) {
    let store = Arc::new(FaultyStore::new(db.store()));
    store.inject(fault);
    // Lasting faults are healed from another thread (a hung call may be this thread's own
    // enqueue); one-shot faults stay armed until their call comes.
    let lasting = matches!(fault, Fault::FailFrom(_) | Fault::HangAt(_));
    let healer = {
        let store = store.clone();
        std::thread::spawn(move || {
            if lasting {
                // Heal 100 ms after the fault first hit (the worker polls, so its call comes).
                let since = Instant::now();
                while store.hits() == 0 && since.elapsed() < PATIENCE {
                    std::thread::sleep(Duration::from_millis(1));
                }
                std::thread::sleep(Duration::from_millis(100));
                store.heal();
            }
        })
    };
    let queue = Queue::new(store.clone());
    let ledger = Ledger::default();
    register(&queue, &ledger);
    let worker = queue
        .worker()
        .concurrency(2)
        .lease(Duration::from_millis(400))
        .poll_interval(Duration::from_millis(5))
        .start()
        .unwrap();
    let opts = JobOptions::new().retries(20).backoff(Duration::from_millis(5), Duration::from_millis(20));
    let mut accepted: Vec<(JobId, &str)> = Vec::new();
    for i in 0..6 {
        let name = if i % 2 == 0 { "plain" } else { "flow" };
        match queue.enqueue(name, &(), opts.clone()) {
            Ok(id) => accepted.push((id, name)),
            Err(Error::Store(e)) => assert!(e.is_retryable(), "{fault:?}: {e}"),
            Err(e) => panic!("{fault:?}: unexpected {e}"),
        }
    }
    healer.join().unwrap();
    let started = Instant::now();
    for &(id, name) in &accepted {
        // `Ok` meant committed: the job is there, and it finishes once the faults stop.
        let info = loop {
            match queue.wait(id, PATIENCE) {
                Ok(info) => break info,
                Err(Error::Store(_)) if started.elapsed() < PATIENCE => {}
                Err(e) => panic!("{fault:?}: job {id}: {e}"),
            }
        };
        assert_eq!(info.status, JobStatus::Completed, "{fault:?}: {info:?}");
        let effects = |entry: String| ledger.count(&entry);
        let ran = if name == "plain" {
            vec![effects(format!("plain {id}"))]
        } else {
            vec![effects(format!("step 1 {id}")), effects(format!("step 2 {id}"))]
        };
        let hits = usize::try_from(store.hits()).unwrap();
        assert!(ran.iter().all(|&n| n >= 1 && n <= 1 + hits), "{fault:?}: job {id} effects {ran:?}, {hits} faults");
    }
    // The worker polls every 5 ms, so the numbered call comes even after the jobs are done.
    let fault_call = match fault {
        Fault::FailOnce(n) | Fault::FailFrom(n) | Fault::ErrorAfterCommit(n) | Fault::HangAt(n) | Fault::PanicAt(n) => {
            n
        }
        Fault::PanicOnNext(_) | Fault::HangOnNext(_) => 0,
    };
    while store.calls() <= fault_call && started.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(5));
    }
    worker.shutdown();
    (store.hits(), accepted.len())
}

pub fn failing_one_call_loses_nothing(db: &dyn Backend) {
    let hit: u64 = (1..=CALLS).map(|n| run_with(db, Fault::FailOnce(n)).0).sum();
    assert_eq!(hit, CALLS, "every injected fault fired");
}

pub fn failing_every_call_until_healed_loses_nothing(db: &dyn Backend) {
    let runs: Vec<(u64, usize)> = (1..=CALLS).step_by(3).map(|n| run_with(db, Fault::FailFrom(n))).collect();
    assert!(runs.iter().all(|&(hits, _)| hits > 0), "{runs:?}");
    assert!(runs.iter().map(|&(_, accepted)| accepted).sum::<usize>() > 0, "some jobs were accepted: {runs:?}");
    assert!(runs.iter().any(|&(_, accepted)| accepted < 6), "some runs refuse enqueues: {runs:?}");
}

pub fn a_lost_acknowledgement_loses_nothing(db: &dyn Backend) {
    let hit: u64 = (1..=CALLS).map(|n| run_with(db, Fault::ErrorAfterCommit(n)).0).sum();
    assert_eq!(hit, CALLS, "every injected fault fired");
}

pub fn a_hung_call_delays_but_loses_nothing(db: &dyn Backend) {
    let hit: u64 = [1, 4, 9, 16].into_iter().map(|n| run_with(db, Fault::HangAt(n)).0).sum();
    assert_eq!(hit, 4);
}

/// Every acknowledged enqueue is in the store even when acknowledgements are lost at random.
pub fn ok_means_committed(db: &dyn Backend) {
    let store = Arc::new(FaultyStore::new(db.store()));
    let queue = Queue::new(store.clone());
    queue.register("plain", |_: &JobContext, n: u32| Ok::<_, std::io::Error>(n)).unwrap();
    let mut oks = Vec::new();
    for n in 0..60u32 {
        let fault =
            if n % 3 == 0 { Fault::ErrorAfterCommit(store.calls() + 1) } else { Fault::FailOnce(store.calls() + 1) };
        store.inject(if n % 2 == 0 { fault } else { Fault::FailOnce(u64::MAX) });
        if let Ok(id) = queue.enqueue("plain", &n, JobOptions::new()) {
            oks.push((id, n));
        }
    }
    store.heal();
    assert!(oks.len() >= 25, "{} enqueues succeeded", oks.len());
    let inner = store.inner();
    for (id, n) in oks {
        let record = inner.get(id).unwrap().unwrap_or_else(|| panic!("acknowledged job {id} is missing"));
        assert_eq!(record.args, n.to_string().into_bytes());
    }
}

crate::backend_tests!(
    failing_one_call_loses_nothing,
    failing_every_call_until_healed_loses_nothing,
    a_lost_acknowledgement_loses_nothing,
    a_hung_call_delays_but_loses_nothing,
    ok_means_committed,
);
