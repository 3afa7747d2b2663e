//! `MemoryStore` against the conformance suite.

use durable_jobs_store::{conformance::Harness, MemoryStore, Store};

struct Memory(MemoryStore);

impl Harness for Memory {
    fn open(&self) -> Box<dyn Store> {
        Box::new(self.0.clone())
    }
}

durable_jobs_store::store_conformance_tests!(Memory(MemoryStore::new()));
