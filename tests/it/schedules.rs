//! Issue 11: recurring schedules. Each due time fires once, whatever the number of workers;
//! after downtime a schedule fires once, not once per missed time; schedules are listed,
//! replaced and removed.

use std::time::{Duration, UNIX_EPOCH};

use durable_jobs::{Error, JobContext, JobFilter, JobOptions, ManualClock, Queue, Schedule};

use crate::support::{wait_until, Backend};

/// The due times of the jobs a schedule enqueued, in µs since the epoch, sorted.
fn fired(queue: &Queue) -> Vec<u128> {
    let jobs = queue.list(&JobFilter::new().name("tick").limit(10_000)).unwrap();
    let mut due: Vec<u128> = jobs.iter().map(|j| j.run_at.duration_since(UNIX_EPOCH).unwrap().as_micros()).collect();
    due.sort_unstable();
    due
}

/// Two worker pools (as two processes would) fire an every-200-ms schedule: every due time
/// once; a 10 s stop fires once for all the missed times, then the schedule keeps its pace.
pub fn each_due_time_fires_once_across_workers(db: &dyn Backend) {
    let clock = ManualClock::starting_at(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let queue = Queue::builder(db.store()).clock(clock.clone()).build();
    queue.register("tick", |_: &JobContext, n: u32| Ok::<_, std::io::Error>(n)).unwrap();
    queue.schedule("ticker", Schedule::every(Duration::from_millis(200)), "tick", &7, JobOptions::new()).unwrap();
    let start = 1_800_000_000_000_000u128;
    let workers: Vec<_> = (0..2).map(|_| queue.worker().concurrency(1).start().unwrap()).collect();
    for step in 1..=20u128 {
        clock.advance(Duration::from_millis(100));
        let expected = (step / 2) as usize;
        wait_until("the schedule fires", || fired(&queue).len() == expected);
    }
    let due = fired(&queue);
    assert_eq!(due, (1..=10).map(|k| start + k * 200_000).collect::<Vec<_>>(), "every boundary, once");
    clock.advance(Duration::from_secs(10));
    wait_until("one catch-up fire", || fired(&queue).len() == 11);
    let info = &queue.schedules().unwrap()[0];
    let micros = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_micros();
    let now = start + 2_000_000 + 10_000_000;
    assert_eq!(micros(info.next_fire), now + 200_000, "the next boundary after now");
    assert_eq!(info.last_fire.map(micros), Some(start + 2_200_000), "the missed due time fired");
    assert_eq!(info.last_job, queue.list(&JobFilter::new().name("tick").limit(100)).unwrap().last().map(|j| j.id));
    clock.advance(Duration::from_millis(200));
    wait_until("back on its pace", || fired(&queue).len() == 12);
    let ticks = || queue.list(&JobFilter::new().name("tick").limit(100)).unwrap();
    wait_until("every tick ran", || ticks().iter().all(|j| j.status == durable_jobs::JobStatus::Completed));
    for worker in workers {
        worker.shutdown();
    }
    assert_eq!(fired(&queue).len(), 12, "nothing fired twice");
}

/// Schedules are validated, listed with their job, replaced (keeping their last fire) and
/// removed.
pub fn schedules_are_validated_listed_replaced_and_removed(db: &dyn Backend) {
    let queue = db.queue();
    queue.register("tick", |_: &JobContext, n: u32| Ok::<_, std::io::Error>(n)).unwrap();
    let every = |ms| Schedule::every(Duration::from_millis(ms));
    let bad = queue.schedule("s", every(0), "tick", &1, JobOptions::new());
    assert!(matches!(bad, Err(Error::InvalidOption { option: "schedule", .. })), "{bad:?}");
    let bad = queue.schedule("s", every(100), "nobody", &1, JobOptions::new());
    assert!(matches!(bad, Err(Error::UnknownJob { .. })), "{bad:?}");
    let bad = queue.schedule("no spaces", every(100), "tick", &1, JobOptions::new());
    assert!(matches!(bad, Err(Error::InvalidName { what: "schedule", .. })), "{bad:?}");
    let bad = queue.schedule("s", every(100), "tick", &1, JobOptions::new().delay(Duration::from_secs(1)));
    assert!(matches!(bad, Err(Error::InvalidOption { option: "schedule", .. })), "{bad:?}");
    assert!(queue.schedules().unwrap().is_empty(), "nothing stored");
    let nightly = Schedule::cron("0 3 * * *").unwrap().in_time_zone("Asia/Tokyo").unwrap();
    queue.schedule("nightly", nightly, "tick", &1, JobOptions::new().queue("reports")).unwrap();
    queue.schedule("often", every(60_000), "tick", &2, JobOptions::new()).unwrap();
    let listed = queue.schedules().unwrap();
    let summary: Vec<_> = listed.iter().map(|s| (s.name.as_str(), s.spec.as_str(), s.queue.as_str())).collect();
    assert_eq!(
        summary,
        [("nightly", "cron 0 3 * * * @ Asia/Tokyo", "reports"), ("often", "every 60000000us", "default")]
    );
    assert_eq!(listed[0].last_fire, None);
    queue.schedule("often", every(120_000), "tick", &3, JobOptions::new()).unwrap();
    assert_eq!(queue.schedules().unwrap()[1].spec, "every 120000000us", "replaced");
    assert!(queue.unschedule("often").unwrap());
    assert!(!queue.unschedule("often").unwrap());
    assert_eq!(queue.schedules().unwrap().len(), 1);
}

crate::backend_tests!(each_due_time_fires_once_across_workers, schedules_are_validated_listed_replaced_and_removed);
