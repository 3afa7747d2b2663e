//! Byte keys whose lexicographic order is the order the store scans in.

use durable_jobs_store::{ChildOf, JobId, JobStatus, LimitScope, SignalId, StoreError, StoreErrorKind, Timestamp};

/// A job id as 8 big-endian bytes (ids are positive).
pub(crate) fn id(id: JobId) -> [u8; 8] {
    id.0.to_be_bytes()
}

/// The id at the end of a key.
pub(crate) fn id_from(bytes: &[u8]) -> Option<JobId> {
    Some(JobId(i64::from_be_bytes(bytes.get(bytes.len().checked_sub(8)?..)?.try_into().ok()?)))
}

/// A counter stored as 8 big-endian bytes.
pub(crate) fn counter_from(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(bytes.try_into().ok()?))
}

/// An `i64` whose big-endian bytes sort like the number.
fn ordered_i64(v: i64) -> [u8; 8] {
    (v.cast_unsigned() ^ (1 << 63)).to_be_bytes()
}

fn from_ordered(bytes: &[u8]) -> Option<i64> {
    let bytes: [u8; 8] = bytes.try_into().ok()?;
    Some((u64::from_be_bytes(bytes) ^ (1 << 63)).cast_signed())
}

/// Appends a string with its length first, so that no string is a prefix of another's key.
fn push_str(k: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(s.as_bytes());
}

/// The prefix of one queue's entries in a queue-first index.
pub(crate) fn queue_prefix(queue: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + queue.len() + 16);
    push_str(&mut k, queue);
    k
}

/// The prefix of one queue and name's entries in the ready index.
pub(crate) fn ready_prefix(queue: &str, name: &str) -> Vec<u8> {
    let mut k = queue_prefix(queue);
    push_str(&mut k, name);
    k
}

/// A pending job in the ready index: queue, name, priority (descending), run time, id. After
/// the prefix, keys sort in claim order.
pub(crate) fn ready(queue: &str, name: &str, priority: i32, run_at: Timestamp, job: JobId) -> Vec<u8> {
    let mut k = ready_prefix(queue, name);
    k.extend_from_slice(&claim_order(priority, run_at, job));
    k
}

/// The end of a ready key: bytes that sort in claim order (priority descending, run time,
/// id), also across queues and names.
pub(crate) fn claim_order(priority: i32, run_at: Timestamp, job: JobId) -> [u8; 20] {
    let mut k = [0; 20];
    // Inverted so that the highest priority sorts first.
    k[..4].copy_from_slice(&(!(priority.cast_unsigned() ^ (1 << 31))).to_be_bytes());
    k[4..12].copy_from_slice(&ordered_i64(run_at.0));
    k[12..].copy_from_slice(&id(job));
    k
}

/// An entry of a queue's time index (scheduled jobs by `run_at`, waiting ones by `wake_at`).
pub(crate) fn queue_timed(queue: &str, at: Timestamp, job: JobId) -> Vec<u8> {
    let mut k = queue_prefix(queue);
    k.extend_from_slice(&ordered_i64(at.0));
    k.extend_from_slice(&id(job));
    k
}

/// The first key of `queue`'s time index after every entry at or before `at`.
pub(crate) fn queue_timed_upper(queue: &str, at: Timestamp) -> Vec<u8> {
    let mut k = queue_prefix(queue);
    k.extend_from_slice(&ordered_i64(at.0.saturating_add(1)));
    k
}

/// The time of a queue time-index key whose queue prefix is `prefix_len` bytes long.
pub(crate) fn queue_timed_at(key: &[u8], prefix_len: usize) -> Option<Timestamp> {
    from_ordered(key.get(prefix_len..prefix_len + 8)?).map(Timestamp)
}

/// An entry of the lease index: lease expiry, then id.
pub(crate) fn timed(at: Timestamp, job: JobId) -> [u8; 16] {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&ordered_i64(at.0));
    k[8..].copy_from_slice(&id(job));
    k
}

/// The time of a lease-index key.
pub(crate) fn timed_at(key: &[u8]) -> Option<Timestamp> {
    from_ordered(key.get(..8)?).map(Timestamp)
}

/// An entry of the key index (every job with a unique key, by key then id); its value is the
/// job's creation time.
pub(crate) fn unique_key(key: &str, job: JobId) -> Vec<u8> {
    let mut k = key_prefix(key);
    k.extend_from_slice(&id(job));
    k
}

/// The prefix of one unique key's entries in the key index.
pub(crate) fn key_prefix(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len() + 8);
    k.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

/// A timestamp as a value.
pub(crate) fn time_value(at: Timestamp) -> [u8; 8] {
    ordered_i64(at.0)
}

/// A timestamp value read back.
pub(crate) fn time_from(bytes: &[u8]) -> Option<Timestamp> {
    from_ordered(bytes).map(Timestamp)
}

/// A checkpoint: job, then step index.
pub(crate) fn checkpoint(job: JobId, index: u32) -> [u8; 12] {
    let mut k = [0; 12];
    k[..8].copy_from_slice(&id(job));
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The prefix of the children of `parent`'s step `index` in the children index.
pub(crate) fn children_prefix(link: ChildOf) -> [u8; 12] {
    checkpoint(link.parent, link.index)
}

/// An entry of the children index: parent, the parent's step index, child. A prefix scan by
/// parent id finds every child of a job; one by [`children_prefix`], those of one step.
pub(crate) fn child(link: ChildOf, child: JobId) -> [u8; 20] {
    let mut k = [0; 20];
    k[..12].copy_from_slice(&children_prefix(link));
    k[12..].copy_from_slice(&id(child));
    k
}

/// The first byte of a finished-index key: one per terminal status (stored, so fixed here
/// rather than taken from the order of `JobStatus::ALL`).
fn finished_tag(status: JobStatus) -> u8 {
    match status {
        JobStatus::Completed => 0,
        JobStatus::Failed => 1,
        JobStatus::Cancelled => 2,
        _ => u8::MAX,
    }
}

/// The key of an entry of the finished index: terminal status, `finished_at`, then the id's
/// bucket of [`FINISHED_BUCKET`] ids; its value lists the jobs of the bucket that finished so
/// (see `finished.rs`). The buckets keep an entry small when many jobs finish at one time.
pub(crate) fn finished(status: JobStatus, at: Timestamp, job: JobId) -> [u8; 17] {
    let mut k = [0; 17];
    k[0] = finished_tag(status);
    k[1..9].copy_from_slice(&ordered_i64(at.0));
    k[9..].copy_from_slice(&(job.0 / FINISHED_BUCKET).to_be_bytes());
    k
}

/// The most ids an entry of the finished index lists.
pub(crate) const FINISHED_BUCKET: i64 = 1024;

/// The finished-index range of the jobs in `status` that finished before `before`.
pub(crate) fn finished_before(status: JobStatus, before: Timestamp) -> std::ops::Range<[u8; 9]> {
    let tag = finished_tag(status);
    let mut from = [0; 9];
    from[0] = tag;
    let mut to = [0; 9];
    to[0] = tag;
    to[1..].copy_from_slice(&ordered_i64(before.0));
    from..to
}

/// A limit's scope as a key of the `limits` tree: a tag (queue or name), then the name with
/// its length first (a window key appends the counted key to it).
pub(crate) fn limit_scope(scope: &LimitScope) -> Result<Vec<u8>, StoreError> {
    let (tag, name) = match scope {
        LimitScope::Queue(q) => (0, q),
        LimitScope::Name(n) => (1, n),
        other => {
            return Err(StoreError::new(
                StoreErrorKind::InvalidInput,
                format!("sled: cannot store a limit on {other:?}"),
            ));
        }
    };
    let mut k = Vec::with_capacity(3 + name.len());
    k.push(tag);
    push_str(&mut k, name);
    Ok(k)
}

/// The scope at the start of a [`limit_scope`] key, and what follows it.
pub(crate) fn limit_scope_from(key: &[u8]) -> Option<(LimitScope, &[u8])> {
    let (&tag, rest) = key.split_first()?;
    let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
    let name = String::from_utf8(rest.get(2..2 + len)?.to_vec()).ok()?;
    let rest = rest.get(2 + len..)?;
    match tag {
        0 => Some((LimitScope::Queue(name), rest)),
        1 => Some((LimitScope::Name(name), rest)),
        _ => None,
    }
}

/// An entry of the `windows` tree: a limit's scope, then the key it counts under.
pub(crate) fn window(scope: &LimitScope, key: &str) -> Result<Vec<u8>, StoreError> {
    let mut k = limit_scope(scope)?;
    k.extend_from_slice(key.as_bytes());
    Ok(k)
}

/// A window and its count as a value of the `windows` tree.
pub(crate) fn window_value(window: i64, count: u32) -> [u8; 12] {
    let mut v = [0; 12];
    v[..8].copy_from_slice(&ordered_i64(window));
    v[8..].copy_from_slice(&count.to_be_bytes());
    v
}

/// A window and its count read back.
pub(crate) fn window_from(bytes: &[u8]) -> Option<(i64, u32)> {
    let window = from_ordered(bytes.get(..8)?)?;
    let count = u32::from_be_bytes(bytes.get(8..)?.try_into().ok()?);
    Some((window, count))
}

/// A signal: job, then signal id (ids are positive), so that a job's signals sort oldest first.
pub(crate) fn signal(job: JobId, signal: SignalId) -> [u8; 16] {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&id(job));
    k[8..].copy_from_slice(&signal.0.to_be_bytes());
    k
}

/// The job and signal id of a signal key.
pub(crate) fn signal_from(key: &[u8]) -> Option<(JobId, SignalId)> {
    let job = i64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let signal = i64::from_be_bytes(key.get(8..16)?.try_into().ok()?);
    (key.len() == 16).then_some((JobId(job), SignalId(signal)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_keys_sort_by_priority_desc_then_run_at_then_id() {
        let k = |p, r, i| ready("q", "n", p, Timestamp(r), JobId(i));
        let mut keys =
            [k(0, 5, 1), k(7, 9, 2), k(-3, -1, 3), k(7, 2, 4), k(i32::MAX, 0, 5), k(i32::MIN, 0, 6), k(0, 5, 0)];
        keys.sort();
        let order: Vec<i64> = keys.iter().map(|k| id_from(k).unwrap().0).collect();
        assert_eq!(order, [5, 4, 2, 0, 1, 3, 6]);
        assert!(!ready("q", "ab", 0, Timestamp(0), JobId(1)).starts_with(&ready_prefix("q", "a")));
    }

    #[test]
    fn timed_keys_sort_by_time() {
        let mut keys = [timed(Timestamp(10), JobId(1)), timed(Timestamp(-5), JobId(2)), timed(Timestamp(10), JobId(0))];
        keys.sort_unstable();
        let order: Vec<i64> = keys.iter().map(|k| id_from(k).unwrap().0).collect();
        assert_eq!(order, [2, 0, 1]);
        assert_eq!(timed_at(&timed(Timestamp(-42), JobId(9))), Some(Timestamp(-42)));
        let q = queue_prefix("q").len();
        assert_eq!(queue_timed_at(&queue_timed("q", Timestamp(-7), JobId(3)), q), Some(Timestamp(-7)));
        assert!(queue_timed("q", Timestamp(10), JobId(i64::MAX)) < queue_timed_upper("q", Timestamp(10)));
        assert!(queue_timed("q", Timestamp(11), JobId(0)) >= queue_timed_upper("q", Timestamp(10)));
    }

    #[test]
    fn children_and_signals_sort_by_owner_then_order() {
        let link = |p, i| ChildOf { parent: JobId(p), index: i };
        let mut keys = [child(link(2, 0), JobId(9)), child(link(1, 3), JobId(4)), child(link(1, 0), JobId(7))];
        keys.sort_unstable();
        let order: Vec<i64> = keys.iter().map(|k| id_from(k).unwrap().0).collect();
        assert_eq!(order, [7, 4, 9]);
        assert!(child(link(1, 3), JobId(4)).starts_with(&children_prefix(link(1, 3))));
        assert!(child(link(1, 3), JobId(4)).starts_with(&id(JobId(1))));
        assert!(signal(JobId(1), SignalId(2)) < signal(JobId(1), SignalId(10)));
        assert!(signal(JobId(1), SignalId(i64::MAX)) < signal(JobId(2), SignalId(1)));
        assert_eq!(signal_from(&signal(JobId(3), SignalId(5))), Some((JobId(3), SignalId(5))));
        assert_eq!(signal_from(&[0; 15]), None);
    }

    #[test]
    fn limit_keys_read_back() {
        let q = |n: &str| LimitScope::Queue(n.into());
        let n = |n: &str| LimitScope::Name(n.into());
        for scope in [n("a"), q("zz"), q("a"), n("")] {
            assert_eq!(limit_scope_from(&limit_scope(&scope).unwrap()), Some((scope, &[][..])));
        }
        let w = window(&q("mail"), "t1").unwrap();
        assert_eq!(limit_scope_from(&w), Some((q("mail"), &b"t1"[..])));
        assert_eq!(window_from(&window_value(-3, 7)), Some((-3, 7)));
    }

    #[test]
    fn finished_keys_sort_by_status_then_time_then_id_and_ranges_end_before_the_bound() {
        let k = |s, at, i| finished(s, Timestamp(at), JobId(i));
        let range = finished_before(JobStatus::Failed, Timestamp(10));
        let inside = |key: &[u8; 17]| range.start[..] <= key[..] && key[..] < range.end[..];
        assert!(inside(&k(JobStatus::Failed, -5, 1)) && inside(&k(JobStatus::Failed, 9, i64::MAX)));
        assert!(!inside(&k(JobStatus::Failed, 10, 1)), "finished at the bound is not before it");
        assert!(!inside(&k(JobStatus::Completed, 1, 1)) && !inside(&k(JobStatus::Cancelled, 1, 1)));
        assert!(k(JobStatus::Failed, 3, 5000) < k(JobStatus::Failed, 4, 1));
        assert!(k(JobStatus::Failed, 3, 1023) < k(JobStatus::Failed, 3, 1024));
        assert_eq!(k(JobStatus::Failed, 3, 1024), k(JobStatus::Failed, 3, 2047), "one bucket");
    }
}
