//! S10: the wall clock jumps forward and back while workflows run.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use durable_jobs::{call, Clock, Error, JobContext, JobOptions, JobStatus, Queue};

use crate::support::{Backend, Ledger, PATIENCE};

/// The system clock shifted by an offset the test moves.
#[derive(Debug, Default, Clone)]
struct JumpClock(Arc<AtomicI64>);

impl JumpClock {
    fn jump(&self, by_secs: i64) {
        self.0.fetch_add(by_secs, Ordering::SeqCst);
    }
}

impl Clock for JumpClock {
    fn now(&self) -> SystemTime {
        let offset = self.0.load(Ordering::SeqCst);
        let magnitude = Duration::from_secs(offset.unsigned_abs());
        if offset >= 0 {
            SystemTime::now() + magnitude
        } else {
            SystemTime::now() - magnitude
        }
    }
}

/// Jumps of up to an hour either way (leases are 1 s) while jobs run cause no double execution
/// and leave no job stuck.
pub fn clock_jumps_cause_no_double_execution(db: &dyn Backend) {
    let clock = JumpClock::default();
    let queue = Queue::builder(db.store()).clock(clock.clone()).build();
    let ledger = Ledger::default();
    let l = ledger.clone();
    queue
        .register("step", move |ctx: &JobContext, n: u32| -> Result<u32, std::io::Error> {
            l.record(format!("{} step {n}", ctx.id()));
            std::thread::sleep(Duration::from_millis(20));
            Ok(n)
        })
        .unwrap();
    queue
        .register("flow", |ctx: &JobContext, (): ()| -> Result<(), Error> {
            for n in 0..3u32 {
                call::<u32>(ctx, "step", &n)?;
            }
            Ok(())
        })
        .unwrap();
    let ids = queue.enqueue_batch("flow", &[(); 40], JobOptions::new()).unwrap();
    let worker = queue.worker().concurrency(2).lease(Duration::from_secs(1)).start().unwrap();
    for jump in [10, -5, 3600, 30, -20, 100] {
        std::thread::sleep(Duration::from_millis(150));
        clock.jump(jump);
    }
    for &id in &ids {
        let info = queue.wait(id, PATIENCE).unwrap();
        assert_eq!((info.status, info.attempt), (JobStatus::Completed, 1), "{info:?}");
    }
    worker.shutdown();
    for id in ids {
        for n in 0..3 {
            assert_eq!(ledger.count(&format!("{id} step {n}")), 1, "job {id} step {n}: {:?}", ledger.entries());
        }
    }
}

crate::backend_tests!(clock_jumps_cause_no_double_execution);
