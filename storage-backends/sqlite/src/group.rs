//! Group commit: writes that arrive while a transaction is being committed share the next one.
//!
//! Every write is queued; whoever then takes the writer connection leads: it runs everything
//! queued, each write in its own savepoint (so one failing write does not undo the others), in
//! one `BEGIN IMMEDIATE … COMMIT`, and hands each writer its result. Writers that find their
//! result already there when they get the connection return at once. One fsync thus serves many
//! writes, and a lone writer pays no thread hand-off.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use std::sync::Arc;

use durable_jobs_store::{StoreError, StoreErrorKind};
use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;

use crate::error::store_error;

/// The most writes one transaction takes.
const MAX_BATCH: usize = 256;

/// Hands a write its result once the transaction's fate is known (`Some` = it did not commit).
type Deliver = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// What a waiting writer is told.
enum Reply<T> {
    /// Its write is done.
    Done(Result<T, StoreError>),
    /// The leader is leaving with writes still queued: lead them.
    Lead,
}

/// A write waiting for a transaction.
trait Queued: Send {
    /// Runs the write inside the open transaction; also returns a copy of its error, if any.
    fn run(self: Box<Self>, conn: &Connection) -> (Deliver, Option<StoreError>);
    /// The transaction could not start: the write fails without running.
    fn fail(self: Box<Self>, error: &StoreError);
    /// Asks the writer waiting for this write to become the leader.
    fn lead(&self);
}

struct QueuedWrite<T, F> {
    what: &'static str,
    op: F,
    reply: Arc<Mailbox<Reply<T>>>,
}

/// Where a waiting writer gets its replies. Waiting parks the thread at once: with many
/// writers on few cores, spinning channels would burn the CPU the leader needs.
struct Mailbox<T> {
    slot: Mutex<VecDeque<T>>,
    ready: Condvar,
}

impl<T> Mailbox<T> {
    fn new() -> Self {
        Mailbox { slot: Mutex::new(VecDeque::with_capacity(2)), ready: Condvar::new() }
    }

    fn send(&self, value: T) {
        self.slot.lock().push_back(value);
        self.ready.notify_one();
    }

    fn recv(&self) -> T {
        let mut slot = self.slot.lock();
        loop {
            if let Some(value) = slot.pop_front() {
                return value;
            }
            self.ready.wait(&mut slot);
        }
    }
}

impl<T, F> Queued for QueuedWrite<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send,
{
    fn run(self: Box<Self>, conn: &Connection) -> (Deliver, Option<StoreError>) {
        let QueuedWrite { what, op, reply } = *self;
        let result = in_savepoint(conn, op).map_err(|e| store_error(what, e));
        let own_error = result.as_ref().err().map(copy);
        let deliver: Deliver = Box::new(move |failed: Option<&StoreError>| {
            let out = match (failed, result) {
                // A write that failed itself reports its own error, the most precise one.
                (Some(_), Err(own)) => Err(own),
                (Some(e), Ok(_)) => Err(copy(e)),
                (None, result) => result,
            };
            reply.send(Reply::Done(out));
        });
        (deliver, own_error)
    }

    fn fail(self: Box<Self>, error: &StoreError) {
        self.reply.send(Reply::Done(Err(copy(error))));
    }

    fn lead(&self) {
        self.reply.send(Reply::Lead);
    }
}

fn copy(e: &StoreError) -> StoreError {
    StoreError::new(e.kind(), e.message())
}

/// Runs a cached statement that takes no parameters and returns no rows.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs `op` between `SAVEPOINT` and `RELEASE`, rolling back to the savepoint if it fails.
fn in_savepoint<T>(conn: &Connection, op: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    exec(conn, "SAVEPOINT write")?;
    match op(conn) {
        Ok(value) => exec(conn, "RELEASE write").map(|()| value),
        Err(e) => {
            // If SQLite already rolled the whole transaction back, these fail too; the batch
            // then reports that to every write.
            let _ = exec(conn, "ROLLBACK TO write").and_then(|()| exec(conn, "RELEASE write"));
            Err(e)
        }
    }
}

/// The queue of writes, and whether some writer is leading.
#[derive(Default)]
struct Waiting {
    writes: VecDeque<Box<dyn Queued>>,
    leading: bool,
}

/// The writer connection and the writes waiting for it.
///
/// At most one writer leads at a time. The others wait on their own reply, so a finished
/// batch wakes them all at once; a leader whose write is done hands the lead to the first
/// waiting writer instead of serving others at its caller's expense.
pub(crate) struct GroupWriter {
    conn: Mutex<Connection>,
    waiting: Mutex<Waiting>,
    /// Transactions led so far.
    transactions: AtomicU64,
}

impl GroupWriter {
    pub(crate) fn new(conn: Connection) -> Self {
        GroupWriter {
            conn: Mutex::new(conn),
            waiting: Mutex::new(Waiting::default()),
            transactions: AtomicU64::default(),
        }
    }

    /// Runs `op` in a write transaction, possibly shared with other writers; returns once that
    /// transaction has committed (or failed). `op` must not depend on running alone.
    pub(crate) fn write<T, F>(&self, what: &'static str, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let replies = Arc::new(Mailbox::new());
        let lead_now = {
            let mut waiting = self.waiting.lock();
            waiting.writes.push_back(Box::new(QueuedWrite { what, op, reply: replies.clone() }));
            !std::mem::replace(&mut waiting.leading, true)
        };
        if lead_now {
            self.lead();
        }
        loop {
            match replies.recv() {
                Reply::Done(out) => return out,
                Reply::Lead => self.lead(),
            }
        }
    }

    /// Runs one batch of queued writes, then hands the lead to the next queued writer, or
    /// stops leading if none waits.
    fn lead(&self) {
        let conn = self.conn.lock();
        let batch: Vec<Box<dyn Queued>> = {
            let mut waiting = self.waiting.lock();
            let n = waiting.writes.len().min(MAX_BATCH);
            waiting.writes.drain(..n).collect()
        };
        self.run_batch(&conn, batch);
        drop(conn);
        let mut waiting = self.waiting.lock();
        match waiting.writes.front() {
            Some(next) => next.lead(),
            None => waiting.leading = false,
        }
    }

    /// Runs `batch` in one transaction and delivers the results.
    fn run_batch(&self, conn: &Connection, batch: Vec<Box<dyn Queued>>) {
        if batch.is_empty() {
            return;
        }
        self.transactions.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
            let e = store_error("begin", e);
            for write in batch {
                write.fail(&e);
            }
            return;
        }
        let mut delivers: Vec<Deliver> = Vec::with_capacity(batch.len());
        let mut lost: Option<StoreError> = None;
        for write in batch {
            if let Some(e) = &lost {
                write.fail(e);
                continue;
            }
            let (deliver, error) = write.run(conn);
            delivers.push(deliver);
            // Some errors (full, I/O, busy) make SQLite roll the whole transaction back; the
            // rest of the batch must not run outside it.
            if conn.is_autocommit() {
                lost = Some(
                    error.unwrap_or_else(|| StoreError::new(StoreErrorKind::Other, "sqlite: transaction ended early")),
                );
            }
        }
        let failed = match lost {
            Some(e) => Some(e),
            None => exec(conn, "COMMIT").err().map(|e| {
                let _ = exec(conn, "ROLLBACK");
                store_error("commit", e)
            }),
        };
        for deliver in delivers {
            deliver(failed.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Five writes queue while the connection is busy; they then commit as one transaction,
    /// and the one that fails does not undo the others.
    #[test]
    fn writes_queued_during_a_commit_share_one_transaction() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let writer = Arc::new(GroupWriter::new(conn));
        // A leader is busy: the next writes queue up behind it.
        writer.waiting.lock().leading = true;
        let threads: Vec<_> = (0..5i64)
            .map(|i| {
                let w = writer.clone();
                std::thread::spawn(move || {
                    w.write("insert", move |c| {
                        let table = if i == 3 { "missing" } else { "t" };
                        c.execute(&format!("INSERT INTO {table} VALUES (?1)"), [i])
                    })
                })
            })
            .collect();
        while writer.waiting.lock().writes.len() < 5 {
            std::thread::yield_now();
        }
        writer.lead();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(writer.transactions.load(Ordering::Relaxed), 1, "one transaction for five writes");
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1, "{results:?}");
        assert!(results[3].is_err());
        let conn = writer.conn.lock();
        let rows: i64 = conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 4);
        assert!(conn.is_autocommit(), "the transaction is closed");
    }
}
