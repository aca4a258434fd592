//! One window per environment: the app holds an exclusive lock on `<env>/app.lock`
//! for as long as it runs (released by the kernel when it exits or dies). A second
//! app on the same environment learns the first one's pid and exits.
//!
//! Not the single-instance plugin: it allows one instance per bundle identifier
//! (not per environment) and on Linux needs a D-Bus session bus. See
//! docs/decisions/0007-one-window-per-environment.md.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;

use thinkube_engine::paths::Layout;
use thinkube_engine::state::fsops::FileOps;

/// Held for the life of the app.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(
        "another Thinkube Installer window (pid {pid}) is open on environment `{env}`; use that window, or close it first"
    )]
    Taken { pid: String, env: String },
    #[error("could not open {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub fn acquire(layout: &Layout, fs: &dyn FileOps) -> Result<InstanceLock, InstanceError> {
    let path = layout.root.join("app.lock");
    let io = |source| InstanceError::Io {
        path: path.display().to_string(),
        source,
    };
    fs.create_dir_all(&layout.root).map_err(io)?;
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(InstanceError::Taken {
                pid: pid.trim().to_string(),
                env: layout.env.to_string(),
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    // Best effort: the pid is only for the second window's message.
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    Ok(InstanceLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;
    use thinkube_engine::paths::EnvName;
    use thinkube_engine::state::fsops::RealFs;

    #[test]
    fn a_second_window_on_the_same_environment_is_refused_and_named() {
        let dir = std::env::temp_dir().join(format!("thinkube-instance-{}", std::process::id()));
        let lab = Layout::new(&dir, EnvName::parse("lab").unwrap());
        let first = acquire(&lab, &RealFs).unwrap();
        let second = acquire(&lab, &RealFs).unwrap_err();
        assert!(
            second.to_string().contains(&std::process::id().to_string()),
            "{second}"
        );
        // Another environment is independent; and the lock goes with the holder.
        let other = Layout::new(&dir, EnvName::default_env());
        let _default = acquire(&other, &RealFs).unwrap();
        drop(first);
        acquire(&lab, &RealFs).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
