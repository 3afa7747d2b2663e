//! `SledStore` against the conformance suite.

use std::sync::{Arc, Mutex, Weak};

use durable_jobs_sled::SledStore;
use durable_jobs_store::{conformance::Harness, Store};

/// A fresh directory. One process opens a sled directory at a time, so a case that opens a
/// second handle while one is open gets the open one (as two threads of a process share a
/// store); once every handle is dropped, `open` opens the directory again.
struct Fresh {
    dir: tempfile::TempDir,
    open: Mutex<Weak<SledStore>>,
}

impl Fresh {
    fn new() -> Self {
        Fresh { dir: tempfile::tempdir().expect("tempdir"), open: Mutex::new(Weak::new()) }
    }
}

impl Harness for Fresh {
    fn open(&self) -> Box<dyn Store> {
        let mut open = self.open.lock().expect("harness lock");
        if let Some(store) = open.upgrade() {
            return Box::new(store);
        }
        let store = Arc::new(SledStore::open(self.dir.path().join("jobs")).expect("open store"));
        *open = Arc::downgrade(&store);
        Box::new(store)
    }
}

durable_jobs_store::store_conformance_tests!(Fresh::new());
