//! The writer lock: an exclusive `flock` on `deployment-state.lock`, held for a
//! writer's whole operation, plus an info file naming the holder for messages.
//!
//! The kernel drops an `flock` when its holder dies, so a killed process never
//! blocks the next start. Readers never take the lock: they read the info file and
//! check whether its process still exists.

use std::fs::{File, TryLockError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::paths::Layout;
use crate::state::fsops::FileOps;
use crate::state::model::ProcessRef;
use crate::timestamp::Timestamp;

/// How long a busy lock with no live holder on record is given to settle.
///
/// An `flock` belongs to an open file description. When a thread of a process forks
/// a child (to run a command) at the moment another thread releases the lock, the
/// child shares that description until it execs, so the lock stays held for a few
/// microseconds after its holder let go. A new holder also takes a moment between
/// locking and writing the info file. Neither is a real contender.
/// Five seconds: writing the info file is a few syscalls, but on a busy disk a
/// rename can wait on the journal for hundreds of milliseconds (seen in CI).
const RELEASE_SETTLE: Duration = Duration::from_secs(5);

/// Who holds (or last held) the lock: the content of the info file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LockHolder {
    pub pid: u32,
    /// Start time of the process (from /proc), so a reused pid is not taken for it.
    pub start_ticks: Option<u64>,
    pub host: String,
    pub user: String,
    pub operation: String,
    pub since: Timestamp,
    /// e.g. `thinkube-deploy 0.1.0`.
    pub program: String,
}

impl LockHolder {
    pub fn process(&self) -> ProcessRef {
        ProcessRef {
            pid: self.pid,
            start_ticks: self.start_ticks,
        }
    }
}

/// How long a writer waits for the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockWait {
    /// Fail at once (exit 3) when another process holds it.
    NoWait,
    /// Wait up to this long (`--lock-timeout SECONDS`).
    Timeout(Duration),
}

/// Who this process is, for the info file.
#[derive(Clone, Debug)]
pub struct Identity {
    pub program: String,
}

impl Identity {
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
        }
    }
}

/// A held lock. Dropping it removes the info file, then releases the lock.
pub struct LockGuard {
    /// The shared backend's lock, when the environment has one (released first).
    pub(crate) shared: Option<crate::state::shared::SharedLease>,
    _file: File,
    info_path: PathBuf,
    fs: Arc<dyn FileOps>,
    pub holder: LockHolder,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Best effort: a stale info file is harmless (its process is gone, and the
        // next holder replaces it); the flock itself is released when `_file` closes.
        let _ = self.fs.remove(&self.info_path);
    }
}

/// Takes the writer lock of an environment, creating its folder (0700) if needed.
pub fn acquire(
    layout: &Layout,
    fs: Arc<dyn FileOps>,
    operation: &str,
    wait: LockWait,
    identity: &Identity,
    now: Timestamp,
) -> Result<LockGuard> {
    let waiting = Waiting {
        on_wait: &|_| {},
        stopped: &|| false,
    };
    acquire_notifying(layout, fs, operation, wait, identity, now, &waiting)
}

/// What a writer waiting for the lock is told and asks: `on_wait` once when it
/// starts waiting for another holder; `stopped` whether to give up (a signal).
pub(crate) struct Waiting<'a> {
    pub on_wait: &'a dyn Fn(Option<&LockHolder>),
    pub stopped: &'a dyn Fn() -> bool,
}

/// Like `acquire`, told and asked as `waiting` says while it waits.
pub(crate) fn acquire_notifying(
    layout: &Layout,
    fs: Arc<dyn FileOps>,
    operation: &str,
    wait: LockWait,
    identity: &Identity,
    now: Timestamp,
    waiting: &Waiting<'_>,
) -> Result<LockGuard> {
    let Waiting { on_wait, stopped } = *waiting;
    fs.create_dir_all(&layout.root)
        .map_err(|e| EngineError::io("create the folder", &layout.root, e))?;
    let path = layout.lock_file();
    let file = crate::state::fsops::open_rw_regular(&path)
        .map_err(|e| EngineError::io("open the lock file", &path, e))?;
    let deadline = match wait {
        LockWait::NoWait => None,
        LockWait::Timeout(d) => Some(Instant::now() + d),
    };
    let mut announced = false;
    let settle_until = Instant::now() + RELEASE_SETTLE;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                // A lock with no live holder on record is being released or was just
                // taken (see RELEASE_SETTLE): look again shortly before giving up.
                if Instant::now() < settle_until && live_holder(layout, fs.as_ref()).is_none() {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                if deadline.is_some_and(|d| Instant::now() < d) {
                    if stopped() {
                        return Err(EngineError::StoppedWaiting {
                            path: layout.root.clone(),
                        });
                    }
                    if !announced {
                        on_wait(read_holder(layout, fs.as_ref()).as_ref());
                        announced = true;
                    }
                    // Polling: std's blocking `lock` cannot time out.
                    std::thread::sleep(Duration::from_millis(25));
                    continue;
                }
                return Err(EngineError::Locked {
                    path: layout.root.clone(),
                    holder: read_holder(layout, fs.as_ref()).map(Box::new),
                    pid: flock_holder(&file),
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(EngineError::io("lock", &path, e));
            }
        }
    }
    let me = current_process();
    let holder = LockHolder {
        pid: me.pid,
        start_ticks: me.start_ticks,
        host: hostname(),
        user: username(),
        operation: operation.to_string(),
        since: now,
        program: identity.program.clone(),
    };
    let info_path = layout.lock_info_file();
    let bytes = serde_json::to_vec_pretty(&holder).unwrap_or_default();
    // Not synced: it only serves messages, and it must be there before anyone who
    // finds the lock taken gives up waiting for it (see RELEASE_SETTLE).
    fs.replace_unsynced(&info_path, &bytes)
        .map_err(|e| EngineError::io("write the lock info file", &info_path, e))?;
    tracing::info!(operation, pid = me.pid, "lock acquired");
    Ok(LockGuard {
        shared: None,
        _file: file,
        info_path,
        fs,
        holder,
    })
}

/// The pid holding an flock on `file`, from the kernel's table (/proc/locks): names
/// the holder even before it has written its info file.
fn flock_holder(file: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().ok()?;
    let (dev, ino) = (meta.dev(), meta.ino());
    // The kernel prints the device as major:minor in hex.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let table = std::fs::read_to_string("/proc/locks").ok()?;
    table.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:2883591 0 EOF" (a "->" marks waiters)
        if fields.get(1) != Some(&"FLOCK") || fields.contains(&"->") {
            return None;
        }
        let mut id = fields.get(5)?.split(':');
        let (maj, min, inode) = (id.next()?, id.next()?, id.next()?);
        let same = u64::from_str_radix(maj, 16).ok()? == major
            && u64::from_str_radix(min, 16).ok()? == minor
            && inode.parse::<u64>().ok()? == ino;
        same.then(|| fields.get(4)?.parse().ok()).flatten()
    })
}

/// The recorded holder of the lock, whether or not it is still alive.
pub(crate) fn read_holder(layout: &Layout, fs: &dyn FileOps) -> Option<LockHolder> {
    let bytes = fs.read(&layout.lock_info_file()).ok()??;
    serde_json::from_slice(&bytes).ok()
}

/// The holder of the lock if its process is alive: what `status` reports. Never
/// takes or waits for the lock.
pub(crate) fn live_holder(layout: &Layout, fs: &dyn FileOps) -> Option<LockHolder> {
    read_holder(layout, fs).filter(|h| process_alive(h.process()))
}

/// This process, as other processes will see it.
pub fn current_process() -> ProcessRef {
    let pid = std::process::id();
    ProcessRef {
        pid,
        start_ticks: start_ticks(pid),
    }
}

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot).
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, ticks)| ticks)
}

/// (state letter, start ticks) from the text of /proc/PID/stat. The command name
/// (field 2) may contain spaces and parentheses, so fields are counted after the
/// last `)`.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ticks = fields.get(19)?.parse().ok()?;
    Some((state, ticks))
}

/// Whether a process is still running: it exists, is not a zombie, and (when its
/// start time was recorded) is the same process, not a later one with its pid.
pub(crate) fn process_alive(process: ProcessRef) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", process.pid)) else {
        return false;
    };
    match parse_stat(&stat) {
        Some((state, ticks)) => {
            !matches!(state, 'Z' | 'X' | 'x')
                && process.start_ticks.is_none_or(|expected| expected == ticks)
        }
        None => false,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn username() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("Uid:"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .map(|uid| format!("uid {uid}"))
                })
                .unwrap_or_else(|| "unknown".into())
        })
}

/// Sends a signal to one process.
pub fn signal_process(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) takes plain integers; an error (no such process) is fine.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::EnvName;
    use crate::state::fsops::RealFs;

    #[test]
    fn parses_stat_with_a_hostile_command_name() {
        let stat = "1234 (a) b (c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21";
        assert_eq!(parse_stat(stat), Some(('S', 987654)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn the_kernel_lock_table_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let held = File::create(&path).unwrap();
        held.try_lock().unwrap();
        let other = File::open(&path).unwrap();
        assert_eq!(flock_holder(&other), Some(std::process::id()));
        drop(held);
        assert_eq!(flock_holder(&other), None);
    }

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = current_process();
        assert!(process_alive(me));
        let impostor = ProcessRef {
            pid: me.pid,
            start_ticks: me.start_ticks.map(|t| t + 1),
        };
        assert!(!process_alive(impostor));
        assert!(!process_alive(ProcessRef {
            pid: u32::MAX - 1,
            start_ticks: None
        }));
    }

    #[test]
    fn a_second_writer_is_refused_with_the_holder_named_then_admitted_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path(), EnvName::default_env());
        let fs: Arc<dyn FileOps> = Arc::new(RealFs);
        let id = Identity::new("test 1");
        let now = Timestamp::now();
        let first = acquire(&layout, fs.clone(), "deploy", LockWait::NoWait, &id, now).unwrap();
        assert_eq!(
            live_holder(&layout, fs.as_ref()).unwrap().operation,
            "deploy"
        );
        // flock is per open file description, so a second open in this process conflicts.
        let err = acquire(
            &layout,
            fs.clone(),
            "retry",
            LockWait::Timeout(Duration::from_millis(60)),
            &id,
            now,
        )
        .err()
        .unwrap();
        let EngineError::Locked {
            holder: Some(h), ..
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!(
            (h.pid, h.operation.as_str()),
            (std::process::id(), "deploy")
        );
        assert!(err.to_string().contains("operation `deploy`"), "{err}");
        drop(first);
        assert!(live_holder(&layout, fs.as_ref()).is_none());
        acquire(&layout, fs, "retry", LockWait::NoWait, &id, now).unwrap();
    }
}
