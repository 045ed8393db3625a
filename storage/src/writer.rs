//! The thread that makes every write of the RocksDB engine (decision 0026).
//!
//! - **Memtables in one arena.** RocksDB inserts a write into the memtable on the thread that
//!   calls `write`, and a memtable's memory is claimed there, block by block. jemalloc serves
//!   each thread from an arena of its own and keeps the pages freed in an arena for that
//!   arena to reuse: when the tokio workers wrote, each flushed memtable left its pages in
//!   the arena of whichever worker had filled it, idle there while the other worker filled
//!   the next one (docs/perf.md, "What the peak is made of"). One thread making every write
//!   claims and reuses memtable memory in one arena.
//! - **A bound on memtable memory.** RocksDB's budget (`db_write_buffer_size`) only decides
//!   when a memtable is switched for a flush; the switched ones wait for the disk, one per
//!   column family being written, so on a disk slower than the produce rate 8 partitions
//!   held 332–445 MB of memtables against a budget of 128 MiB. Here a write waits while the
//!   memtables take [`MemtableLimit::max_bytes`] or more and a flush is running: the flushes
//!   free memory as they finish. With no flush running the write goes ahead, so a wait is
//!   only ever for a flush that is running, and ends (RocksDB's own `allow_stall` can wait
//!   with none, decision 0019). The bound is soft: writes pass between flushes.
//!
//! - **Closing.** [`Writer::close`] goes through the queue like a write: every write handed
//!   over before it is written, every one after it is refused ([`StorageError::Closed`]), so
//!   the flush that follows a close leaves nothing only in the WAL.
//!
//! The callers still build their write batch themselves (the copy of the records), and wait
//! for the write to be done.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rocksdb::{WriteBufferManager, WriteOptions};

use crate::StorageError;

type Db = rocksdb::DBWithThreadMode<rocksdb::MultiThreaded>;

/// Where the writer leaves a caller's result; each calling thread waits on its own.
#[derive(Default)]
struct Slot {
    result: Mutex<Option<Result<(), StorageError>>>,
    ready: Condvar,
}

thread_local! {
    static SLOT: Arc<Slot> = Arc::new(Slot::default());
}

/// What a job asks of the writer thread.
enum Work {
    Write(rocksdb::WriteBatch),
    /// Refuse every write after this one.
    Close,
}

struct Job {
    work: Option<Work>,
    slot: Arc<Slot>,
    answered: bool,
}

impl Job {
    fn answer(&mut self, result: Result<(), StorageError>) {
        *self.slot.result.lock() = Some(result);
        self.slot.ready.notify_one();
        self.answered = true;
    }
}

impl Drop for Job {
    /// A job dropped unanswered (not sent, or the writer thread unwinding) still answers
    /// its caller.
    fn drop(&mut self) {
        if !self.answered {
            self.answer(Err(stopped()));
        }
    }
}

fn stopped() -> StorageError {
    StorageError::Engine {
        message: "the log writer thread has stopped".into(),
    }
}

/// How much memtable memory writes wait for ([`Writer`]).
pub(crate) struct MemtableLimit {
    /// The manager every column family's memtables are counted in.
    pub(crate) manager: WriteBufferManager,
    /// At or above this, a write waits for a running flush.
    pub(crate) max_bytes: usize,
}

const THREAD_NAME: &str = "strom-log-writer";

/// How often a waiting write looks again.
const WAIT_POLL: Duration = Duration::from_millis(1);
/// A wait this long is logged as a warning (the disk is not keeping up at all).
const LONG_WAIT: Duration = Duration::from_secs(10);

/// Waits while `usage()` is at or above `max` and `flushing()` says a flush is running;
/// returns how long it waited.
fn wait_for_room(max: usize, usage: impl Fn() -> usize, flushing: impl Fn() -> bool) -> Duration {
    if usage() < max || !flushing() {
        return Duration::ZERO;
    }
    let started = Instant::now();
    let mut warned = started;
    loop {
        std::thread::sleep(WAIT_POLL);
        if warned.elapsed() >= LONG_WAIT {
            warned = Instant::now();
            tracing::warn!(
                waited_ms = started.elapsed().as_millis() as u64,
                memtable_bytes = usage(),
                max_bytes = max,
                "writes are waiting for memtable flushes"
            );
        }
        if usage() < max || !flushing() {
            return started.elapsed();
        }
    }
}

fn flush_running(db: &Db) -> bool {
    db.property_int_value("rocksdb.num-running-flushes")
        .ok()
        .flatten()
        .is_some_and(|n| n > 0)
}

/// The handle of the writer thread: [`Writer::write`] hands it a batch and waits.
/// Nothing that runs on the writer thread may call [`Writer::write`] (it would wait for
/// itself); RocksDB runs none of Strom's code there (no merge operator, filter or listener).
pub(crate) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    waits: Arc<Waits>,
}

/// The writes that waited for memtable room, and how long they waited in all.
#[derive(Default)]
struct Waits {
    count: AtomicU64,
    micros: AtomicU64,
}

impl Writer {
    /// Starts the writer thread of `db`, writing with `options` and, with a `limit`,
    /// waiting for memtable room first; it ends when the writer is dropped.
    pub(crate) fn start(
        db: Arc<Db>,
        options: WriteOptions,
        limit: Option<MemtableLimit>,
    ) -> Result<Self, StorageError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let waits = Arc::new(Waits::default());
        let counted = Arc::clone(&waits);
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                let mut closed = false;
                for mut job in queue {
                    let batch = match job.work.take() {
                        Some(Work::Write(batch)) if !closed => batch,
                        Some(Work::Write(_)) => {
                            job.answer(Err(StorageError::Closed));
                            continue;
                        }
                        Some(Work::Close) => {
                            closed = true;
                            job.answer(Ok(()));
                            continue;
                        }
                        None => continue,
                    };
                    if let Some(limit) = &limit {
                        let waited = wait_for_room(
                            limit.max_bytes,
                            || limit.manager.get_usage(),
                            || flush_running(&db),
                        );
                        if !waited.is_zero() {
                            counted.count.fetch_add(1, Ordering::Relaxed);
                            counted
                                .micros
                                .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
                            tracing::debug!(
                                waited_us = waited.as_micros() as u64,
                                "a write waited for memtable room"
                            );
                        }
                    }
                    let result = db
                        .write_opt(batch, &options)
                        .map_err(|e| StorageError::Engine {
                            message: e.into_string(),
                        });
                    job.answer(result);
                }
            })
            .map_err(|e| StorageError::Engine {
                message: format!("could not start the log writer thread: {e}"),
            })?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
            waits,
        })
    }

    /// How many writes waited for memtable room, and for how many microseconds in all.
    pub(crate) fn waits(&self) -> (u64, u64) {
        (
            self.waits.count.load(Ordering::Relaxed),
            self.waits.micros.load(Ordering::Relaxed),
        )
    }

    /// Writes `batch` on the writer thread and waits until it is written; refused once the
    /// writer is closed.
    pub(crate) fn write(&self, batch: rocksdb::WriteBatch) -> Result<(), StorageError> {
        self.submit(Work::Write(batch))
    }

    /// Waits until every write handed over before this call is written, and refuses every
    /// write after it ([`StorageError::Closed`]). Idempotent.
    pub(crate) fn close(&self) -> Result<(), StorageError> {
        self.submit(Work::Close)
    }

    fn submit(&self, work: Work) -> Result<(), StorageError> {
        debug_assert_ne!(
            std::thread::current().name(),
            Some(THREAD_NAME),
            "the writer thread would wait for itself"
        );
        let slot = SLOT.with(Arc::clone);
        let job = Job {
            work: Some(work),
            slot: Arc::clone(&slot),
            answered: false,
        };
        // Not sent (the thread has stopped): the job, dropped here, answers itself.
        match &self.jobs {
            Some(jobs) => drop(jobs.send(job)),
            None => drop(job),
        }
        let mut result = slot.result.lock();
        loop {
            if let Some(r) = result.take() {
                return r;
            }
            slot.ready.wait(&mut result);
        }
    }
}

impl Drop for Writer {
    /// Ends the thread once it has written what it was given, and waits for it: the
    /// database it holds closes before the store's owner goes on (and may reopen it).
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_write_under_the_limit_does_not_wait() {
        let flushing_asked = Cell::new(false);
        let waited = wait_for_room(
            100,
            || 99,
            || {
                flushing_asked.set(true);
                true
            },
        );
        assert_eq!(waited, Duration::ZERO);
        assert!(!flushing_asked.get());
    }

    #[test]
    fn a_write_over_the_limit_waits_until_flushes_bring_it_under() {
        // A flush runs throughout; the third look finds the memtables under the limit.
        let looks = Cell::new(0);
        let waited = wait_for_room(
            100,
            || {
                looks.set(looks.get() + 1);
                if looks.get() >= 3 {
                    50
                } else {
                    150
                }
            },
            || true,
        );
        assert_eq!(looks.get(), 3);
        assert!(waited >= 2 * WAIT_POLL, "{waited:?}");
    }

    #[test]
    fn a_write_over_the_limit_goes_ahead_once_no_flush_runs() {
        // Over the limit and nothing flushing: the write itself makes RocksDB switch a
        // memtable for a flush, so waiting would never end.
        let polls = Cell::new(0);
        let waited = wait_for_room(
            100,
            || 150,
            || {
                polls.set(polls.get() + 1);
                polls.get() < 3
            },
        );
        assert_eq!(polls.get(), 3);
        assert!(waited >= 2 * WAIT_POLL, "{waited:?}");
    }
}
