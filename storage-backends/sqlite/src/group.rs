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
        let mut unanswered = Unanswered(Some(reply.clone()));
        let result = in_savepoint(conn, op).map_err(|e| store_error(what, e));
        unanswered.0 = None;
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

/// Answers a write whose own code panicked, as the panic unwinds (its batch is failed by
/// [`Batch`]'s drop), so that its writer does not wait forever.
struct Unanswered<T>(Option<Arc<Mailbox<Reply<T>>>>);

impl<T> Drop for Unanswered<T> {
    fn drop(&mut self) {
        if let Some(reply) = self.0.take() {
            let e =
                StoreError::new(StoreErrorKind::Other, "sqlite: this write panicked; its transaction was rolled back");
            reply.send(Reply::Done(Err(e)));
        }
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
    /// stops leading if none waits. Also if a write panics: the others are failed, not left
    /// waiting, and the lead goes on.
    fn lead(&self) {
        let _hand_on = HandOn(self);
        let conn = self.conn.lock();
        let todo: VecDeque<Box<dyn Queued>> = {
            let mut waiting = self.waiting.lock();
            let n = waiting.writes.len().min(MAX_BATCH);
            waiting.writes.drain(..n).collect()
        };
        if !todo.is_empty() {
            self.transactions.fetch_add(1, Ordering::Relaxed);
            Batch { conn: &conn, todo, delivers: Vec::new(), done: false }.run();
        }
    }
}

/// Hands the lead to the next queued writer, or stops leading, when the leader is done (or
/// unwinds from a panic).
struct HandOn<'a>(&'a GroupWriter);

impl Drop for HandOn<'_> {
    fn drop(&mut self) {
        let mut waiting = self.0.waiting.lock();
        match waiting.writes.front() {
            Some(next) => next.lead(),
            None => waiting.leading = false,
        }
    }
}

/// One transaction's writes: those still to run, and those run and waiting for the outcome.
/// Dropped unfinished (a write panicked), it rolls back and fails them all.
struct Batch<'a> {
    conn: &'a Connection,
    todo: VecDeque<Box<dyn Queued>>,
    delivers: Vec<Deliver>,
    done: bool,
}

impl Batch<'_> {
    /// Runs the writes in one transaction and delivers the results.
    fn run(mut self) {
        let conn = self.conn;
        if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
            self.fail_all(&store_error("begin", e));
            return;
        }
        let mut lost: Option<StoreError> = None;
        while let Some(write) = self.todo.pop_front() {
            if let Some(e) = &lost {
                write.fail(e);
                continue;
            }
            let (deliver, error) = write.run(conn);
            self.delivers.push(deliver);
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
        self.done = true;
        for deliver in self.delivers.drain(..) {
            deliver(failed.as_ref());
        }
    }

    fn fail_all(&mut self, e: &StoreError) {
        self.done = true;
        for write in self.todo.drain(..) {
            write.fail(e);
        }
        for deliver in self.delivers.drain(..) {
            deliver(Some(e));
        }
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if !self.conn.is_autocommit() {
            let _ = exec(self.conn, "ROLLBACK");
        }
        let e =
            StoreError::new(StoreErrorKind::Other, "sqlite: a write in this transaction panicked; it was rolled back");
        self.fail_all(&e);
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

#[cfg(test)]
mod panic_tests {
    use super::*;

    /// Issue 9: a write that panics inside a shared transaction must not wedge the writer: the
    /// other writes of its batch get an error (their transaction was rolled back), the lead
    /// goes on, and later writes work.
    #[test]
    fn a_panicking_write_fails_its_batch_and_hands_the_lead_on() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let writer = Arc::new(GroupWriter::new(conn));
        writer.waiting.lock().leading = true;
        let threads: Vec<_> = (0..3i64)
            .map(|i| {
                let w = writer.clone();
                std::thread::spawn(move || {
                    w.write("insert", move |c| {
                        assert!(i != 1, "a bug in a write");
                        c.execute("INSERT INTO t VALUES (?1)", [i])
                    })
                })
            })
            .collect();
        while writer.waiting.lock().writes.len() < 3 {
            std::thread::yield_now();
        }
        let leader = {
            let w = writer.clone();
            std::thread::spawn(move || w.lead())
        };
        assert!(leader.join().is_err(), "the panic reaches the leading thread");
        let results: Vec<_> = threads.into_iter().map(std::thread::JoinHandle::join).collect();
        for (i, r) in results.iter().enumerate() {
            match r {
                Ok(Err(e)) => assert!(e.message().contains("panicked"), "write {i}: {e}"),
                other => panic!("write {i}: expected an error, got {other:?}"),
            }
        }
        assert!(!writer.waiting.lock().leading, "nobody leads after the panic");
        assert_eq!(writer.write("insert", |c| c.execute("INSERT INTO t VALUES (9)", [])).unwrap(), 1);
        let rows: i64 = writer.conn.lock().query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 1, "the panicked batch was rolled back");
    }
}
