//! Reading a copy of a damaged database on a thread of its own, as a stream of raw entries.
//!
//! sled may panic on a damaged log, or loop for a long time in a broken tree; the thread
//! catches panics, and the caller stops listening when no entry arrives within its limit.
//! Entries arrive as they are read, so everything read before a failure is kept.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::Duration;

use durable_jobs_store::{JobId, SignalId, StoreError};
use sled::IVec;

use crate::open::config;
use crate::tx::{Format, FORMAT_KEY, MAX_ID_KEY, MAX_SIGNAL_KEY};
use crate::{keys, SledOptions};

/// The trees a salvage reads; the indexes (the children and finished indexes too) are rebuilt
/// from the jobs. Leads are left behind (they are leases, taken again within one), and so are
/// the window counts of limits (at worst a limit lets one window's claims through twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tree {
    Jobs,
    Checkpoints,
    Signals,
    /// Paused queues: an operator's pause outlives the damage.
    Paused,
    /// Schedules, with what they last did.
    Schedules,
    /// Limits.
    Limits,
}

/// What the reading thread reports, in order.
pub(super) enum Event {
    /// sled opened the copy; its meta tree says which of our formats it is in (`None`: not
    /// ours, or unreadable), the highest job id ever inserted and the highest signal id.
    Opened { format: Option<Format>, max_id: Option<JobId>, max_signal: Option<SignalId> },
    /// One entry, undecoded.
    Entry(Tree, IVec, IVec),
    /// sled could not read further in a tree; what follows in it is lost.
    Broken,
    /// Everything readable was read.
    Done,
    /// sled failed to open the copy, or panicked.
    Failed(String),
}

/// Reads the database in `dir` on a new thread.
pub(super) fn spawn(dir: PathBuf, options: &SledOptions) -> Result<Reader, StoreError> {
    let (tx, rx) = sync_channel(256);
    let options = options.clone();
    let timeout = options.open_timeout;
    std::thread::Builder::new()
        .name("dj-sled-salvage".into())
        .spawn(move || {
            let send = |e| tx.send(e).is_ok();
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_all(&dir, &options, &send)));
            match read {
                Ok(Ok(())) => send(Event::Done),
                Ok(Err(message)) => send(Event::Failed(message)),
                Err(panic) => send(Event::Failed(format!("sled panicked: {}", panic_message(&*panic)))),
            };
        })
        .map_err(|e| super::io_error("start a reading thread", e))?;
    Ok(Reader { rx, timeout })
}

/// The receiving end; a thread that outlives it stops at its next entry.
pub(super) struct Reader {
    rx: Receiver<Event>,
    timeout: Duration,
}

impl Reader {
    /// The next event, or a `Failed` one if nothing came within the time limit.
    pub(super) fn next(&self) -> Event {
        match self.rx.recv_timeout(self.timeout) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => {
                Event::Failed(format!("sled made no progress for {:?} (the thread was left behind)", self.timeout))
            }
            Err(RecvTimeoutError::Disconnected) => Event::Failed("the reading thread stopped".into()),
        }
    }
}

/// Opens the copy and sends every entry of the jobs, checkpoints, signals, paused, schedules and
/// limits trees; `Err` if
/// it could not be opened. Stops early if nobody listens. Panics are caught by the caller.
fn read_all(dir: &std::path::Path, options: &SledOptions, send: &dyn Fn(Event) -> bool) -> Result<(), String> {
    let db = config(dir, options).open().map_err(|e| format!("sled: {e}"))?;
    // A damaged meta tree only means that the jobs cannot be recognised as ours by it.
    let meta = |key: &[u8]| db.open_tree("meta").ok()?.get(key).ok().flatten();
    let format = meta(FORMAT_KEY).and_then(|v| Format::of(&v));
    let max_id = meta(MAX_ID_KEY).and_then(|v| keys::id_from(&v));
    let max_signal = meta(MAX_SIGNAL_KEY).and_then(|v| keys::counter_from(&v)).map(SignalId);
    if !send(Event::Opened { format, max_id, max_signal }) {
        return Ok(());
    }
    let trees = [
        (Tree::Jobs, "jobs"),
        (Tree::Checkpoints, "checkpoints"),
        (Tree::Signals, "signals"),
        (Tree::Paused, "paused"),
        (Tree::Schedules, "schedules"),
        (Tree::Limits, "limits"),
    ];
    for (tree, name) in trees {
        // Older formats have no such tree; opening it would only create it in the copy.
        let absent = match tree {
            Tree::Signals => matches!(format, Some(Format::V1 | Format::V2)),
            Tree::Paused | Tree::Schedules | Tree::Limits => {
                matches!(format, Some(Format::V1 | Format::V2 | Format::V3))
            }
            Tree::Jobs | Tree::Checkpoints => false,
        };
        if absent {
            continue;
        }
        let Ok(entries) = db.open_tree(name).map(|t| t.iter()) else {
            send(Event::Broken);
            continue;
        };
        for entry in entries {
            // After a damaged node sled returns the same error again and again.
            let Ok((key, value)) = entry else {
                send(Event::Broken);
                break;
            };
            if !send(Event::Entry(tree, key, value)) {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic.downcast_ref::<String>().map(String::as_str).or_else(|| panic.downcast_ref::<&str>().copied()).unwrap_or("")
}
