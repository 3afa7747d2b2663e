//! Group flush: writers that commit while a flush is running share the next one.
//!
//! sled applies a transaction in memory at once and makes it durable at `flush()`. A write is
//! acknowledged only after a flush that started after it committed; one flush serves every
//! write committed before it started, so N concurrent writers cost about one flush, not N.

use parking_lot::{Condvar, Mutex};

use durable_jobs_store::StoreError;

use crate::error::store_error;

#[derive(Debug, Default)]
pub(crate) struct GroupFlush {
    state: Mutex<State>,
    flushed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Writes committed in memory, numbered from 1.
    committed: u64,
    /// Every write numbered up to this is durable.
    durable: u64,
    /// A flush is running.
    flushing: bool,
    /// Flushes done, for tests and diagnostics.
    flushes: u64,
}

impl GroupFlush {
    /// Numbers a write that has just committed in memory.
    pub(crate) fn committed(&self) -> u64 {
        let mut st = self.state.lock();
        st.committed += 1;
        st.committed
    }

    /// Returns once write `seq` is durable, flushing if no flush that covers it is running.
    pub(crate) fn wait_durable(&self, db: &sled::Db, seq: u64) -> Result<(), StoreError> {
        let mut st = self.state.lock();
        loop {
            if st.durable >= seq {
                return Ok(());
            }
            if st.flushing {
                self.flushed.wait(&mut st);
                continue;
            }
            // Lead a flush covering everything committed so far.
            let target = st.committed;
            st.flushing = true;
            drop(st);
            let result = db.flush();
            st = self.state.lock();
            st.flushing = false;
            st.flushes += 1;
            if result.is_ok() {
                st.durable = st.durable.max(target);
            }
            self.flushed.notify_all();
            if let Err(e) = result {
                return Err(store_error("flush", e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_flush_serves_every_write_committed_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let group = GroupFlush::default();
        let seqs: Vec<u64> = (0..5).map(|_| group.committed()).collect();
        group.wait_durable(&db, seqs[4]).unwrap();
        for &seq in &seqs {
            group.wait_durable(&db, seq).unwrap();
        }
        assert_eq!(group.state.lock().flushes, 1, "five writes, one flush");
        let later = group.committed();
        group.wait_durable(&db, later).unwrap();
        assert_eq!(group.state.lock().flushes, 2, "a write after the flush needs its own");
    }
}
