//! The checkpoints of a resumed job, read a page at a time as its steps replay.

use durable_jobs_store::{Checkpoint, JobId, Store, StoreError};

/// Checkpoints read per store call: memory stays bounded whatever the workflow's length.
const PAGE: usize = 256;

/// A window on a job's checkpoints. Steps ask for increasing indexes, so each page is read
/// once and looked up by binary search.
#[derive(Debug)]
pub(crate) struct Replay {
    job: JobId,
    /// Checkpoints with an index of at least `start`, in index order.
    page: Vec<Checkpoint>,
    start: u32,
    /// No checkpoint after the page.
    complete: bool,
}

impl Replay {
    /// The replay of `job`; `resumed` says whether it has checkpoints at all (if not, nothing
    /// is ever read).
    pub(crate) fn new(job: JobId, resumed: bool) -> Self {
        Replay { job, page: Vec::new(), start: 0, complete: !resumed }
    }

    /// The checkpoint at `index`, if one is recorded.
    pub(crate) fn at(&mut self, store: &dyn Store, index: u32) -> Result<Option<Checkpoint>, StoreError> {
        self.cover(store, index)?;
        Ok(self.page.binary_search_by_key(&index, |c| c.index).ok().map(|i| self.page[i].clone()))
    }

    /// Whether a checkpoint is recorded after `index` (the workflow went on past it).
    pub(crate) fn has_later(&mut self, store: &dyn Store, index: u32) -> Result<bool, StoreError> {
        let Some(next) = index.checked_add(1) else { return Ok(false) };
        self.cover(store, next)?;
        Ok(self.page.iter().any(|c| c.index >= next))
    }

    /// Reads the page starting at `index` unless the one in hand tells about it.
    fn cover(&mut self, store: &dyn Store, index: u32) -> Result<(), StoreError> {
        let beyond = self.page.last().is_none_or(|last| index > last.index);
        if index < self.start || (beyond && !self.complete) {
            self.page = store.checkpoints(self.job, index, PAGE)?;
            self.start = index;
            self.complete = self.page.len() < PAGE;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use durable_jobs_store::{ClaimRequest, MemoryStore, NewJob, Timestamp, Write};

    #[test]
    fn reads_a_page_at_a_time_and_finds_every_checkpoint() {
        let store = MemoryStore::new();
        let id = store.enqueue(&[NewJob::new("default", "flow", b"1".to_vec(), Timestamp(0))]).unwrap()[0].id();
        let req = ClaimRequest::new("w", Timestamp(0), Timestamp(10)).names(["flow"]);
        let run = store.claim(&req).unwrap().jobs[0].claim();
        let writes: Vec<Write> = (0..600u32)
            .filter(|i| i % 7 != 3)
            .map(|i| Write::checkpoint(run, Checkpoint::value(i, "s", i.to_string().into_bytes())))
            .collect();
        store.commit("w", Timestamp(0), &writes).unwrap();
        let faulty = durable_jobs_store::faulty::FaultyStore::new(store);
        let mut replay = Replay::new(id, true);
        for i in 0..600u32 {
            let found = replay.at(&faulty, i).unwrap();
            assert_eq!(found.is_some(), i % 7 != 3, "index {i}");
        }
        assert!(replay.has_later(&faulty, 598).unwrap());
        assert!(!replay.has_later(&faulty, 599).unwrap());
        assert!(faulty.calls() <= 5, "{} reads for 600 steps", faulty.calls());
        let mut fresh = Replay::new(id, false);
        assert_eq!(fresh.at(&faulty, 0).unwrap(), None, "a fresh job reads nothing");
    }
}
