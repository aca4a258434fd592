//! One window per environment: the app holds an exclusive lock on `<env>/app.lock`
//! for as long as it runs (released by the kernel when it exits or dies). A second
//! app on the same environment asks the first, over the Unix socket `<env>/app.sock`,
//! to bring its window forward, and exits; when the first cannot be asked, it says
//! why and names the first one's pid.
//!
//! Not the single-instance plugin: it allows one instance per bundle identifier
//! (not per environment) and on Linux needs a D-Bus session bus. See
//! docs/decisions/0007-one-window-per-environment.md.

use std::fs::{File, TryLockError};
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use thinkube_engine::paths::Layout;
use thinkube_engine::state::fsops::FileOps;

/// Held for the life of the app.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    /// Where a second app asks for the window; `None` when the socket could not be
    /// made (a path longer than a socket address holds): the second app then says so.
    pub listener: Option<UnixListener>,
}

/// What a second app asks, and what the first answers once it has done it.
const SHOW: &str = "show";
const SHOWN: &str = "shown";
/// How long a second app waits for the first to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

fn socket_path(layout: &Layout) -> PathBuf {
    layout.root.join("app.sock")
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
    // The lock is ours: a socket file left by an app that died is stale.
    let sock = socket_path(layout);
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).ok();
    Ok(InstanceLock {
        _file: file,
        listener,
    })
}

/// Answers second apps on a thread of its own: `show` runs `on_show` (which brings
/// the window forward) and answers `shown`.
pub fn serve(listener: UnixListener, on_show: impl Fn() + Send + 'static) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(ASK_TIMEOUT));
            let mut line = String::new();
            if BufReader::new(&conn).read_line(&mut line).is_ok() && line.trim() == SHOW {
                on_show();
                let _ = writeln!(conn, "{SHOWN}");
            }
        }
    });
}

/// Asks the app that holds the environment to bring its window forward. The error
/// says why it could not be asked.
pub fn ask_to_show(layout: &Layout) -> Result<(), String> {
    let sock = socket_path(layout);
    let mut conn = UnixStream::connect(&sock)
        .map_err(|e| format!("it does not answer on {}: {e}", sock.display()))?;
    let _ = conn.set_read_timeout(Some(ASK_TIMEOUT));
    writeln!(conn, "{SHOW}").map_err(|e| format!("it could not be asked: {e}"))?;
    let mut line = String::new();
    BufReader::new(&conn)
        .read_line(&mut line)
        .map_err(|e| format!("it did not answer: {e}"))?;
    if line.trim() == SHOWN {
        Ok(())
    } else {
        Err(format!("it answered {:?}", line.trim()))
    }
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

    #[test]
    fn a_second_app_asks_the_first_to_show_its_window() {
        let dir = std::env::temp_dir().join(format!("thinkube-show-{}", std::process::id()));
        let layout = Layout::new(&dir, EnvName::default_env());
        // No first app: nothing answers, and the reason is said.
        std::fs::create_dir_all(&layout.root).unwrap();
        let e = ask_to_show(&layout).unwrap_err();
        assert!(e.contains("does not answer"), "{e}");

        let mut first = acquire(&layout, &RealFs).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        serve(first.listener.take().unwrap(), move || {
            let _ = tx.send(());
        });
        ask_to_show(&layout).unwrap();
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the first app was asked to show its window");
        ask_to_show(&layout).unwrap();
        assert!(
            rx.recv_timeout(Duration::from_secs(5)).is_ok(),
            "asked again"
        );
        drop(first);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
