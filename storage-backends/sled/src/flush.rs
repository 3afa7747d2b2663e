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
