//! `SledStore` against the conformance suite.

use durable_jobs_sled::SledStore;
use durable_jobs_store::{conformance::Harness, Store};

struct Fresh(tempfile::TempDir);

impl Harness for Fresh {
    fn open(&self) -> Box<dyn Store> {
        Box::new(SledStore::open(self.0.path().join("jobs")).expect("open store"))
    }
}

durable_jobs_store::store_conformance_tests!(Fresh(tempfile::tempdir().expect("tempdir")));
