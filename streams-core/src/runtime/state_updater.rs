//! `StateUpdater`: one thread per client that restores the persistent stores of newly assigned
//! tasks from their changelogs, as Kafka Streams' state updater. Stream threads keep polling
//! and processing their running tasks meanwhile, and restoration gets a core of its own.
//!
//! A stream thread locks a new task's directory, reads its checkpoint and hands the task over
//! ([`StateUpdater::add`]). The updater opens the task's persistent logged stores in handles of
//! its own, restores them from the checkpoint to the end of each changelog, flushes them, writes
//! the checkpoint, closes them and answers with the offsets reached. The stream thread then
//! opens the task: its persistent stores are at their changelogs' ends, and its in-memory stores
//! (which live in the stream thread's memory) restore there. A task revoked while restoring is
//! taken back ([`StateUpdater::remove`]): the updater checkpoints what it restored and closes
//! the stores before the stream thread lets go of the directory.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{debug, error, info, info_span, warn};

use super::changelog_reader::{ChangelogReader, RestoreTarget};
use super::checkpoint::{OffsetCheckpoint, Offsets};
use super::state_directory::StateDirectory;
use super::{ClientShared, RestoreEvent};
use crate::collector::RecordCollector;
use crate::config::Settings;
use crate::error::{Result, StreamsError};
use crate::metrics::{ThreadMetrics, UpdaterMetrics};
use crate::record::{ProducerRecord, RecordContext, TaskId};
use crate::state::builder::StoreContext;
use crate::state::{RocksDbConfig, StateStore, ThreadCache};
use crate::topology::{Subtopology, Topology};

/// How long the updater restores between two looks at its commands.
const SLICE: Duration = Duration::from_millis(100);

/// A task handed to the updater.
pub(crate) struct RestoreRequest {
    pub(crate) task: TaskId,
    /// The stream thread's number for this hand-over, returned with the answer.
    pub(crate) request: u64,
    /// The changelog offsets its stores on disk hold.
    pub(crate) checkpoint: Offsets,
    /// The stream thread's sensors (records restored, records left).
    pub(crate) metrics: Option<Arc<ThreadMetrics>>,
    /// Where the answer goes.
    pub(crate) reply: Sender<Restored>,
}

/// The updater's answer: the task's persistent stores are restored and closed, with the
/// changelog offsets they hold and what each restored; or the error that stopped it.
pub(crate) struct Restored {
    pub(crate) task: TaskId,
    pub(crate) request: u64,
    pub(crate) result: Result<(Offsets, Vec<RestoreEvent>)>,
}

enum Command {
    Add(RestoreRequest),
    Remove { task: TaskId, done: Sender<()> },
}

/// The stream threads' handle on the client's state updater thread.
#[derive(Clone)]
pub(crate) struct StateUpdater {
    commands: Sender<Command>,
}

impl StateUpdater {
    /// Starts the updater thread `name`; it runs until the client shuts down.
    pub(crate) fn spawn(
        name: String,
        topology: Arc<Topology>,
        settings: &Settings,
        shared: Arc<ClientShared>,
    ) -> Result<(StateUpdater, JoinHandle<()>)> {
        let config = settings.client_config("restore.consumer.", &[("client.id", format!("{name}-restore-consumer"))]);
        let metrics = shared.metrics.state_updater(&name);
        let reader = ChangelogReader::new(&config, Duration::from_secs(300))?.counting_in(metrics.restored.clone());
        let (commands, receiver) = mpsc::channel();
        let state_dir = StateDirectory::new(&settings.state_dir, &settings.application_id)?;
        let (application_id, rocksdb_config) = (settings.application_id.clone(), settings.rocksdb_config.clone());
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let _span = info_span!("state-updater", thread = %name).entered();
                // Built here: the stores it opens never leave this thread.
                let updater = Updater {
                    subtopologies: topology.subtopologies(),
                    topology,
                    application_id,
                    state_dir,
                    rocksdb_config,
                    reader,
                    commands: receiver,
                    tasks: BTreeMap::new(),
                    metrics,
                };
                updater.run(&shared);
            })
            .map_err(|e| StreamsError::io("the state updater thread (spawn)", e))?;
        Ok((StateUpdater { commands }, handle))
    }

    /// Hands a task over for restoration; the answer comes on its `reply` channel.
    pub(crate) fn add(&self, request: RestoreRequest) -> Result<()> {
        let task = request.task;
        self.commands
            .send(Command::Add(request))
            .map_err(|_| StreamsError::IllegalState(format!("task {task}: the state updater has stopped")))
    }

    /// Takes a task back (revoked while restoring): returns once the updater has checkpointed
    /// what it restored and closed the task's stores, or has stopped.
    pub(crate) fn remove(&self, task: TaskId) {
        let (done, closed) = mpsc::channel();
        if self.commands.send(Command::Remove { task, done }).is_ok() {
            // A disconnect means the updater stopped, closing its stores on the way out.
            let _ = closed.recv();
        }
    }
}

/// The updater thread's state.
struct Updater {
    topology: Arc<Topology>,
    subtopologies: Vec<Subtopology>,
    application_id: String,
    state_dir: StateDirectory,
    rocksdb_config: RocksDbConfig,
    reader: ChangelogReader,
    commands: Receiver<Command>,
    tasks: BTreeMap<TaskId, Restoring>,
    metrics: Arc<UpdaterMetrics>,
}

/// A task being restored.
struct Restoring {
    request: RestoreRequest,
    stores: TaskStores,
}

impl Updater {
    fn run(mut self, shared: &ClientShared) {
        info!("state updater started");
        while !shared.shutdown.load(Ordering::Acquire) {
            // Idle: wait for work. Restoring: look at the commands between slices.
            let first = if self.tasks.is_empty() {
                match self.commands.recv_timeout(SLICE) {
                    Ok(command) => Some(command),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                None
            };
            let commands: Vec<Command> = first.into_iter().chain(self.commands.try_iter()).collect();
            for command in commands {
                match command {
                    Command::Add(request) => self.add(request),
                    Command::Remove { task, done } => {
                        self.remove(task);
                        let _ = done.send(());
                    }
                }
            }
            self.metrics.restoring_tasks.store(self.tasks.len() as i64, Ordering::Relaxed);
            self.restore_slice();
        }
        for task in self.tasks.keys().copied().collect::<Vec<_>>() {
            self.remove(task);
        }
        info!("state updater stopped");
    }

    /// Opens the task's persistent stores; a store that cannot be opened (a corrupt RocksDB
    /// directory) is wiped with the checkpoint, and the stores restore in full.
    fn add(&mut self, mut request: RestoreRequest) {
        let id = request.task;
        let dir = self.state_dir.task_dir(id);
        let opened = match TaskStores::open(self, id, dir.clone()) {
            Err(e @ StreamsError::Store { .. }) => {
                warn!(task_id = %id, error = %e, "task state is unusable; wiping it and restoring from the changelogs");
                request.checkpoint.clear();
                StateDirectory::wipe_task_state(&dir).and_then(|()| TaskStores::open(self, id, dir))
            }
            opened => opened,
        };
        match opened {
            Ok(stores) => {
                debug!(task_id = %id, from = ?request.checkpoint, "restoring");
                self.tasks.insert(id, Restoring { request, stores });
            }
            Err(e) => {
                let _ = request.reply.send(Restored { task: id, request: request.request, result: Err(e) });
            }
        }
    }

    /// Restores the task the reader is on (or the next) for a slice.
    fn restore_slice(&mut self) {
        let current = self.reader.restoring().filter(|id| self.tasks.contains_key(id));
        let Some(id) = current.or_else(|| self.tasks.keys().next().copied()) else { return };
        let task = self.tasks.get_mut(&id).expect("found above");
        let metrics = task.request.metrics.clone();
        let step = self.reader.restore_step(&task.stores, &mut task.request.checkpoint, SLICE, metrics.as_deref());
        let result = match step {
            Ok(None) => return,
            Ok(Some(events)) => Ok(events),
            Err(e) => {
                error!(task_id = %id, error = %e, "restoration failed");
                Err(e)
            }
        };
        let task = self.tasks.remove(&id).expect("found above");
        let closed = task.stores.close(&task.request.checkpoint);
        let result = closed.and(result).map(|events| (task.request.checkpoint, events));
        let _ = task.request.reply.send(Restored { task: id, request: task.request.request, result });
    }

    /// Stops restoring `task`, keeping what it restored.
    fn remove(&mut self, task: TaskId) {
        let Some(restoring) = self.tasks.remove(&task) else { return };
        if self.reader.restoring() == Some(task) {
            if let Err(e) = self.reader.forget() {
                warn!(task_id = %task, error = %e, "releasing the restore consumer failed");
            }
        }
        match restoring.stores.close(&restoring.request.checkpoint) {
            Ok(()) => info!(task_id = %task, at = ?restoring.request.checkpoint, "restoration stopped; what it restored is checkpointed"),
            Err(e) => warn!(task_id = %task, error = %e, "closing a task taken back from the state updater failed"),
        }
    }
}

/// The persistent logged stores of one task, opened by the updater; nothing is written to
/// them but changelog records.
struct TaskStores {
    id: TaskId,
    dir: PathBuf,
    /// Store name -> (store, changelog topic).
    stores: BTreeMap<String, (Rc<RefCell<dyn StateStore>>, String)>,
}

impl TaskStores {
    fn open(updater: &Updater, id: TaskId, dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|e| StreamsError::io(&dir, e))?;
        let ctx = StoreContext {
            application_id: updater.application_id.clone(),
            task_id: id,
            task_dir: dir.clone(),
            collector: Rc::new(RefCell::new(NoOutput)),
            record_context: Rc::new(RefCell::new(RecordContext { partition: id.partition, ..Default::default() })),
            thread_cache: Rc::new(RefCell::new(ThreadCache::new(0))),
            // Restoration writes below the transaction buffer.
            exactly_once: false,
            metrics: None,
            rocksdb_config: updater.rocksdb_config.clone(),
        };
        let mut stores = BTreeMap::new();
        let sub = updater.subtopologies.get(id.subtopology as usize).ok_or_else(|| StreamsError::IllegalState(format!("no sub-topology for task {id}")))?;
        for name in &sub.stores {
            let builder = updater.topology.stores.get(name).ok_or_else(|| StreamsError::Topology(format!("state store `{name}` is connected but was never added")))?;
            if !builder.logging_enabled() {
                continue;
            }
            let registered = builder.build(&ctx)?;
            let persistent = registered.store.borrow().persistent();
            match registered.changelog_topic {
                Some(topic) if persistent => {
                    stores.insert(name.clone(), (registered.store, topic));
                }
                _ => registered.store.borrow_mut().close()?,
            }
        }
        Ok(TaskStores { id, dir, stores })
    }

    /// Flushes the stores, writes the checkpoint of what they hold and closes them.
    fn close(self, checkpoint: &Offsets) -> Result<()> {
        let mut result = self.stores.values().try_for_each(|(store, _)| store.borrow_mut().flush());
        if result.is_ok() {
            let topics: Vec<&String> = self.stores.values().map(|(_, topic)| topic).collect();
            let held: Offsets = checkpoint.iter().filter(|((topic, _), _)| topics.contains(&topic)).map(|(k, v)| (k.clone(), *v)).collect();
            result = OffsetCheckpoint::in_dir(&self.dir).write(&held);
        }
        for (store, _) in self.stores.values() {
            result = result.and(store.borrow_mut().close());
        }
        result
    }
}

impl RestoreTarget for TaskStores {
    fn id(&self) -> TaskId {
        self.id
    }
    fn changelogs(&self) -> Vec<(String, String)> {
        self.stores.iter().map(|(name, (_, topic))| (name.clone(), topic.clone())).collect()
    }
    fn state_store(&self, name: &str) -> Option<Rc<RefCell<dyn StateStore>>> {
        self.stores.get(name).map(|(store, _)| store.clone())
    }
}

/// The collector of the updater's stores: restoration bypasses change-logging, so nothing
/// ever reaches it.
struct NoOutput;

impl RecordCollector for NoOutput {
    fn send(&mut self, record: ProducerRecord) -> Result<()> {
        Err(StreamsError::IllegalState(format!("the state updater writes no records (one for `{}`)", record.topic)))
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}
