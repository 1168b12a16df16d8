//! The state directory: `<state.dir>/<application.id>/<task_id>/`, one lock per task directory so
//! two instances (or threads) never open the same task's stores.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Result, StreamsError};
use crate::record::TaskId;

/// The application's state directory.
#[derive(Debug, Clone)]
pub struct StateDirectory {
    app_dir: PathBuf,
}

/// An exclusive lock on a task directory, released on drop.
#[derive(Debug)]
pub struct TaskDirLock {
    _file: File,
}

impl StateDirectory {
    /// `<state_dir>/<application_id>`, created if missing.
    pub fn new(state_dir: &Path, application_id: &str) -> Result<Self> {
        let app_dir = state_dir.join(application_id);
        std::fs::create_dir_all(&app_dir).map_err(|e| StreamsError::io(&app_dir, e))?;
        Ok(StateDirectory { app_dir })
    }

    /// The application directory.
    pub fn app_dir(&self) -> &Path {
        &self.app_dir
    }

    /// A task's directory.
    pub fn task_dir(&self, task: TaskId) -> PathBuf {
        self.app_dir.join(task.to_string())
    }

    /// Locks a task directory, waiting up to `wait` for another owner to let go.
    pub fn lock(&self, task: TaskId, wait: Duration) -> Result<TaskDirLock> {
        let dir = self.task_dir(task);
        std::fs::create_dir_all(&dir).map_err(|e| StreamsError::io(&dir, e))?;
        let path = dir.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StreamsError::io(&path, e))?;
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

    /// Deletes the application's state (only when no instance runs).
    pub fn clean(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.app_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StreamsError::io(&self.app_dir, e)),
            _ => Ok(()),
        }
    }
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
}
