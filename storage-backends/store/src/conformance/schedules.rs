//! Cases for recurring schedules: stored, replaced, removed, and fired once per due time.

use super::{at, job, Harness, T0};
use crate::{Enqueued, FireOutcome, JobFilter, ScheduleRecord};

fn schedule(name: &str, next: i64) -> ScheduleRecord {
    ScheduleRecord::new(name, "every 10s", br#"{"job":"a"}"#.to_vec(), at(next), T0)
}

/// Schedules are stored durably, listed by name, replaced keeping what they did, removed.
pub fn schedules_are_stored_replaced_and_removed(h: &dyn Harness) {
    let store = h.open();
    store.put_schedule(&schedule("nightly", 10)).unwrap();
    store.put_schedule(&schedule("hourly", 20)).unwrap();
    assert_eq!(
        store.fire("nightly", at(10), at(20), &job("a"), at(11)).unwrap(),
        FireOutcome::Fired(Enqueued::New(crate::JobId(1)))
    );
    let mut replaced = ScheduleRecord::new("nightly", "every 1m", b"{}".to_vec(), at(60), at(12));
    replaced.last_fire = None;
    store.put_schedule(&replaced).unwrap();
    drop(store);
    let store = h.open();
    let all = store.schedules().unwrap();
    assert_eq!(all.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["hourly", "nightly"]);
    let nightly = &all[1];
    assert_eq!(
        (nightly.spec.as_str(), nightly.template.as_slice(), nightly.next_fire),
        ("every 1m", &b"{}"[..], at(60))
    );
    assert_eq!((nightly.created_at, nightly.updated_at), (T0, at(12)), "created once, updated by the put");
    assert_eq!((nightly.last_fire, nightly.last_job), (Some(at(10)), Some(crate::JobId(1))), "kept across the put");
    assert_eq!(all[0], schedule("hourly", 20));
    assert!(store.remove_schedule("hourly").unwrap());
    assert!(!store.remove_schedule("hourly").unwrap());
    assert_eq!(store.schedules().unwrap().len(), 1);
    assert_eq!(store.fire("hourly", at(20), at(30), &job("a"), at(21)).unwrap(), FireOutcome::NotFound);
}

/// A due time fires once: a second fire of the same due time (another process, a repeat)
/// inserts nothing; a unique key held by a live job makes the fire insert nothing but move on.
pub fn a_schedule_fires_once_per_due_time(h: &dyn Harness) {
    let store = h.open();
    store.put_schedule(&schedule("s", 10)).unwrap();
    let fired = store.fire("s", at(10), at(20), &job("a"), at(10)).unwrap();
    assert!(matches!(fired, FireOutcome::Fired(Enqueued::New(_))), "{fired:?}");
    // Another handle (another process) where the store allows one while this one is open.
    let second = store.capabilities().multi_process.then(|| h.open());
    let other = second.as_deref().unwrap_or(&*store);
    assert_eq!(other.fire("s", at(10), at(20), &job("a"), at(10)).unwrap(), FireOutcome::Moved);
    assert_eq!(store.fire("s", at(5), at(20), &job("a"), at(10)).unwrap(), FireOutcome::Moved, "not due then");
    assert_eq!(store.list(&JobFilter::new()).unwrap().len(), 1);
    let keyed = job("a").unique_key("one-at-a-time");
    let first = store.fire("s", at(20), at(30), &keyed, at(20)).unwrap();
    let FireOutcome::Fired(Enqueued::New(holder)) = first else { panic!("{first:?}") };
    assert_eq!(
        store.fire("s", at(30), at(40), &keyed, at(30)).unwrap(),
        FireOutcome::Fired(Enqueued::Duplicate(holder))
    );
    let s = &store.schedules().unwrap()[0];
    assert_eq!((s.next_fire, s.last_fire, s.last_job, s.updated_at), (at(40), Some(at(30)), None, at(30)));
    assert_eq!(store.list(&JobFilter::new()).unwrap().len(), 2);
}
