//! The state directory: `<state.dir>/<application.id>/<task_id>/`, one lock per task directory so
//! two instances (or threads) never open the same task's stores.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Result, StreamsError};
use crate::record::TaskId;

/// The application's state directory.
#[derive(Debug, Clone)]
pub(crate) struct StateDirectory {
    app_dir: PathBuf,
}

/// An exclusive lock on a task directory, released on drop.
#[derive(Debug)]
pub(crate) struct TaskDirLock {
    _file: File,
}

/// An instance's exclusive lock on the application directory, released on drop.
#[derive(Debug)]
pub(crate) struct StateDirLock {
    _file: File,
}

/// The file holding the instance's process id, as Kafka Streams' `kafka-streams-process-metadata`.
const PROCESS_FILE: &str = "kafka-streams-process-metadata";

impl StateDirectory {
    /// `<state_dir>/<application_id>`, created if missing.
    pub(crate) fn new(state_dir: &Path, application_id: &str) -> Result<Self> {
        let app_dir = state_dir.join(application_id);
        std::fs::create_dir_all(&app_dir).map_err(|e| StreamsError::io(&app_dir, e))?;
        Ok(StateDirectory { app_dir })
    }

    /// The application directory.
    pub(crate) fn app_dir(&self) -> &Path {
        &self.app_dir
    }

    /// Locks the application directory for this instance; a second instance pointed at the
    /// same `state.dir` and `application.id` is refused.
    pub(crate) fn lock_instance(&self) -> Result<StateDirLock> {
        let path = self.app_dir.join(".lock");
        let file = open_lock_file(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(StateDirLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StreamsError::StateDir {
                path: self.app_dir.display().to_string(),
                message: "another instance of this application is using this state directory; \
                          give each instance its own state.dir"
                    .into(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(StreamsError::io(&path, e)),
        }
    }

    /// This instance's process id: random, created once and kept in the state directory, so a
    /// restarted instance keeps its identity (and its transactional ids fence its predecessor).
    pub(crate) fn process_id(&self) -> String {
        let path = self.app_dir.join(PROCESS_FILE);
        if let Some(id) = std::fs::read_to_string(&path).ok().map(|t| t.trim().to_string()).filter(|t| is_process_id(t)) {
            return id;
        }
        let id = random_id();
        if let Err(e) = std::fs::write(&path, format!("{id}\n")) {
            tracing::warn!(path = %path.display(), error = %e, "cannot keep the process id; a new one is used next time");
        }
        id
    }

    /// A task's directory.
    pub(crate) fn task_dir(&self, task: TaskId) -> PathBuf {
        self.app_dir.join(task.to_string())
    }

    /// Locks a task directory, waiting up to `wait` for another owner to let go.
    pub(crate) fn lock(&self, task: TaskId, wait: Duration) -> Result<TaskDirLock> {
        let dir = self.task_dir(task);
        std::fs::create_dir_all(&dir).map_err(|e| StreamsError::io(&dir, e))?;
        let path = dir.join(".lock");
        let file = open_lock_file(&path)?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(TaskDirLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StreamsError::StateDir {
                        path: dir.display().to_string(),
                        message: format!(
                            "task {task} is locked by another instance using the same state.dir; \
                             give each instance its own state.dir"
                        ),
                    })
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(StreamsError::io(&path, e)),
            }
        }
    }

    /// Deletes a task's stores and checkpoint, keeping its directory and lock: the changelogs
    /// hold everything, so the task restores in full.
    pub(crate) fn wipe_task_state(task_dir: &Path) -> Result<()> {
        let stores = task_dir.join("rocksdb");
        if stores.exists() {
            std::fs::remove_dir_all(&stores).map_err(|e| StreamsError::io(&stores, e))?;
        }
        let checkpoint = task_dir.join(".checkpoint");
        if checkpoint.exists() {
            std::fs::remove_file(&checkpoint).map_err(|e| StreamsError::io(&checkpoint, e))?;
        }
        Ok(())
    }

    /// Deletes the application's state (only when no instance runs).
    pub(crate) fn clean(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.app_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StreamsError::io(&self.app_dir, e)),
            _ => Ok(()),
        }
    }
}

/// Opens (creating if needed) a file that is only ever locked, never written.
fn open_lock_file(path: &Path) -> Result<File> {
    File::options().create(true).truncate(false).write(true).open(path).map_err(|e| StreamsError::io(path, e))
}

fn is_process_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// 128 random bits as hex, from the standard library's randomly keyed hasher.
fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut id = String::with_capacity(32);
    for salt in 0..2u64 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(salt);
        hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
        hasher.write_u32(std::process::id());
        id.push_str(&format!("{:016x}", hasher.finish()));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_directory_has_one_owner() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDirectory::new(dir.path(), "app").unwrap();
        let task = TaskId::new(0, 1);
        let lock = state.lock(task, Duration::ZERO).unwrap();
        let err = state.lock(task, Duration::from_millis(100)).unwrap_err().to_string();
        assert!(err.contains("locked by another instance"), "{err}");
        drop(lock);
        state.lock(task, Duration::ZERO).unwrap();
        assert!(state.task_dir(task).ends_with("app/0_1"));
    }

    #[test]
    fn one_instance_per_state_directory_and_a_stable_process_id() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDirectory::new(dir.path(), "app").unwrap();
        let lock = state.lock_instance().unwrap();
        let err = StateDirectory::new(dir.path(), "app").unwrap().lock_instance().unwrap_err().to_string();
        assert!(err.contains("another instance"), "{err}");
        drop(lock);
        state.lock_instance().unwrap();
        let id = state.process_id();
        assert!(is_process_id(&id), "{id}");
        assert_eq!(state.process_id(), id);
        assert_ne!(random_id(), random_id());
    }
}
