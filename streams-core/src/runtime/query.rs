//! The plumbing of interactive queries: which stream thread holds which task, and the requests
//! a query sends to that thread.
//!
//! Stores belong to their stream thread (they are not `Send`: tasks, caches and stores are
//! single-threaded, as the record path wants them). A query therefore runs *on* the thread
//! that owns the task: the caller sends a closure over the task's channel and waits for its
//! answer; the thread serves its queue between polls (at most [`QUERY_POLL_SLICE`] apart) and
//! after each batch of records. Reads go through the store's layers — the record cache and the
//! open transaction's writes included — exactly as the task's processors see them.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::shared::lock;
use crate::error::{InvalidStateStoreReason, Result, StreamsError};
use crate::record::TaskId;
use crate::task::{StreamTask, TaskState};

/// The longest a stream thread blocks in `poll` before it looks at its query queue again.
pub(crate) const QUERY_POLL_SLICE: Duration = Duration::from_millis(10);

/// How long a thread keeps serving queries in one go before it goes back to its records.
const SERVE_BUDGET: Duration = Duration::from_millis(20);

/// How long a thread that has just answered waits for the next page of the same scan.
const FOLLOW_UP_WAIT: Duration = Duration::from_micros(300);

/// A query for one task, run on the thread that owns it: with the task if it is there in a
/// queryable state, else with the reason it is not.
pub(crate) struct QueryRequest {
    task: TaskId,
    stale: bool,
    run: Box<dyn FnOnce(std::result::Result<&StreamTask, &'static str>) + Send>,
}

/// Where a local task is, for the query side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskSlot {
    pub(crate) thread: usize,
    pub(crate) restoring: bool,
}

/// The client's map of its tasks to their threads, and each thread's query queue.
#[derive(Default)]
pub(crate) struct QueryRouter {
    tasks: Mutex<BTreeMap<TaskId, TaskSlot>>,
    threads: Mutex<BTreeMap<usize, Sender<QueryRequest>>>,
}

impl QueryRouter {
    /// A (re)started thread's queue: requests sent to `thread` arrive on the receiver.
    pub(crate) fn register_thread(&self, thread: usize) -> Receiver<QueryRequest> {
        let (tx, rx) = mpsc::channel();
        lock(&self.threads).insert(thread, tx);
        lock(&self.tasks).retain(|_, slot| slot.thread != thread);
        rx
    }

    /// `thread` holds `task`, restoring or running.
    pub(crate) fn task_added(&self, thread: usize, task: TaskId, restoring: bool) {
        lock(&self.tasks).insert(task, TaskSlot { thread, restoring });
    }

    /// `task` left `thread` (closed, revoked); another thread may hold it by now.
    pub(crate) fn task_removed(&self, thread: usize, task: TaskId) {
        let mut tasks = lock(&self.tasks);
        if tasks.get(&task).is_some_and(|slot| slot.thread == thread) {
            tasks.remove(&task);
        }
    }

    /// The local tasks of `subtopology` (on `partition` if given) a query may read: running
    /// ones, and restoring ones when `stale`.
    pub(crate) fn tasks(&self, subtopology: u32, partition: Option<i32>, stale: bool) -> Vec<TaskId> {
        lock(&self.tasks)
            .iter()
            .filter(|(id, slot)| {
                id.subtopology == subtopology && partition.is_none_or(|p| id.partition == p) && (stale || !slot.restoring)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Runs `f` on the thread that owns `task` and returns its answer, waiting at most `timeout`.
    pub(crate) fn query<R: Send + 'static>(
        &self,
        store: &str,
        task: TaskId,
        stale: bool,
        timeout: Duration,
        f: impl FnOnce(&StreamTask) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let migrated = |why: &str| {
            StreamsError::invalid_store(store, InvalidStateStoreReason::Migrated, format!("task {task} {why}"))
        };
        let Some(slot) = lock(&self.tasks).get(&task).copied() else { return Err(migrated("is not on this instance")) };
        let Some(sender) = lock(&self.threads).get(&slot.thread).cloned() else { return Err(migrated("has no thread")) };
        let (reply, answer) = mpsc::sync_channel(1);
        let run = Box::new(move |target: std::result::Result<&StreamTask, &'static str>| {
            let _ = reply.send(target.map(f));
        });
        if sender.send(QueryRequest { task, stale, run }).is_err() {
            return Err(migrated("lost its thread"));
        }
        match answer.recv_timeout(timeout) {
            Ok(Ok(result)) => result,
            Ok(Err(why)) => Err(migrated(why)),
            Err(RecvTimeoutError::Timeout) => Err(StreamsError::invalid_store(
                store,
                InvalidStateStoreReason::Busy,
                format!("the thread of task {task} did not answer within {timeout:?}"),
            )),
            Err(RecvTimeoutError::Disconnected) => Err(migrated("was closed while queried")),
        }
    }
}

/// Serves the queries waiting in `queue` against `find(task)`, for at most [`SERVE_BUDGET`];
/// after an answer it waits briefly for a follow-up (the next page of a scan).
pub(crate) fn serve<'t>(queue: &Receiver<QueryRequest>, find: impl Fn(TaskId) -> Option<&'t StreamTask>) {
    let start = Instant::now();
    let mut request = queue.try_recv().ok();
    while let Some(QueryRequest { task, stale, run }) = request.take() {
        let target = match find(task) {
            Some(t) if t.state() == TaskState::Running => Ok(t),
            // Restoring tasks, and standby tasks (which stay `Created`), serve stale reads.
            Some(t) if matches!(t.state(), TaskState::Restoring | TaskState::Created) && stale => Ok(t),
            Some(t) if t.state() == TaskState::Restoring => Err("is restoring"),
            Some(t) if t.state() == TaskState::Created => Err("is a standby"),
            Some(_) => Err("is closing"),
            None => Err("is not on this instance"),
        };
        run(target);
        if start.elapsed() < SERVE_BUDGET {
            request = queue.try_recv().ok().or_else(|| queue.recv_timeout(FOLLOW_UP_WAIT).ok());
        }
    }
}
