//! Byte keys whose lexicographic order is the order the store scans in.

use durable_jobs_store::{JobId, Timestamp};

/// A job id as 8 big-endian bytes (ids are positive).
pub(crate) fn id(id: JobId) -> [u8; 8] {
    id.0.to_be_bytes()
}

pub(crate) fn id_from(bytes: &[u8]) -> Option<JobId> {
    Some(JobId(i64::from_be_bytes(bytes.get(bytes.len().checked_sub(8)?..)?.try_into().ok()?)))
}

/// An `i64` whose big-endian bytes sort like the number.
fn ordered_i64(v: i64) -> [u8; 8] {
    (v.cast_unsigned() ^ (1 << 63)).to_be_bytes()
}

/// The prefix of one queue's claim entries: the length, then the name (no separator needed).
pub(crate) fn claim_prefix(queue: &str) -> Vec<u8> {
    let len = u16::try_from(queue.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(2 + queue.len() + 20);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(queue.as_bytes());
    k
}

/// A pending job in the claim index: queue, priority (descending), run time, id.
pub(crate) fn claim(queue: &str, priority: i32, run_at: Timestamp, job: JobId) -> Vec<u8> {
    let mut k = claim_prefix(queue);
    // Inverted so that the highest priority sorts first.
    k.extend_from_slice(&(!(priority.cast_unsigned() ^ (1 << 31))).to_be_bytes());
    k.extend_from_slice(&ordered_i64(run_at.0));
    k.extend_from_slice(&id(job));
    k
}

/// The run time of a claim key (after its queue prefix of `prefix_len` bytes).
pub(crate) fn claim_run_at(key: &[u8], prefix_len: usize) -> Option<Timestamp> {
    let bytes: [u8; 8] = key.get(prefix_len + 4..prefix_len + 12)?.try_into().ok()?;
    Some(Timestamp((u64::from_be_bytes(bytes) ^ (1 << 63)).cast_signed()))
}

/// An entry of a time index (leases, wake-ups): time, then id.
pub(crate) fn timed(at: Timestamp, job: JobId) -> [u8; 16] {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&ordered_i64(at.0));
    k[8..].copy_from_slice(&id(job));
    k
}

/// The first key after every entry of a time index at or before `at`.
pub(crate) fn timed_upper(at: Timestamp) -> [u8; 8] {
    ordered_i64(at.0.saturating_add(1))
}

/// A checkpoint: job, then step index.
pub(crate) fn checkpoint(job: JobId, index: u32) -> [u8; 12] {
    let mut k = [0; 12];
    k[..8].copy_from_slice(&id(job));
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_keys_sort_by_priority_desc_then_run_at_then_id() {
        let k = |p, r, i| claim("q", p, Timestamp(r), JobId(i));
        let mut keys =
            [k(0, 5, 1), k(7, 9, 2), k(-3, -1, 3), k(7, 2, 4), k(i32::MAX, 0, 5), k(i32::MIN, 0, 6), k(0, 5, 0)];
        keys.sort();
        let order: Vec<i64> = keys.iter().map(|k| id_from(k).unwrap().0).collect();
        assert_eq!(order, [5, 4, 2, 0, 1, 3, 6]);
        assert_eq!(claim_run_at(&k(3, -42, 9), claim_prefix("q").len()), Some(Timestamp(-42)));
    }

    #[test]
    fn timed_keys_sort_by_time() {
        let mut keys = [timed(Timestamp(10), JobId(1)), timed(Timestamp(-5), JobId(2)), timed(Timestamp(10), JobId(0))];
        keys.sort_unstable();
        let order: Vec<i64> = keys.iter().map(|k| id_from(k).unwrap().0).collect();
        assert_eq!(order, [2, 0, 1]);
        assert!(timed(Timestamp(10), JobId(i64::MAX)).as_slice() < timed_upper(Timestamp(10)).as_slice());
        assert!(timed(Timestamp(11), JobId(0)).as_slice() >= timed_upper(Timestamp(10)).as_slice());
    }
}
