//! The engine's errors. Each variant carries what it is about (a path, a step id) and
//! its message says what happened and what to do; `exit_code` maps it to the contract.

use std::io;
use std::path::PathBuf;

use crate::state::lifecycle::{RestartStillDue, TransitionError};
use crate::state::lock::LockHolder;

/// Exit codes of the contract.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const FAILED: u8 = 1;
    pub(crate) const BAD_INPUT: u8 = 2;
    pub const LOCKED: u8 = 3;
    pub(crate) const UNREADABLE: u8 = 4;
    pub(crate) const GATE_BLOCKED: u8 = 5;
    pub(crate) const STOPPED: u8 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "cannot tell where the installer home is: HOME is not set; set THINKUBE_INSTALLER_HOME to a folder"
    )]
    NoHome,

    #[error(
        "`{name}` is not a valid environment name: use letters, digits, `-` and `_` (at most 64)"
    )]
    InvalidEnvName { name: String },

    #[error("{}", locked_message(.path, .holder.as_deref(), *.pid))]
    Locked {
        path: PathBuf,
        holder: Option<Box<LockHolder>>,
        /// The holder's pid from the kernel's lock table, when it has not recorded
        /// itself yet.
        pid: Option<u32>,
    },

    #[error(
        "the state file {path} cannot be read: {reason}. It was left untouched. Run `thinkube-deploy recover --from-backup` to put the last good copy back (the unreadable file is moved aside, not deleted), or see docs/troubleshooting.md"
    )]
    Unreadable { path: PathBuf, reason: String },

    #[error(
        "the run file {path} cannot be read: {reason}. It was left untouched, and the deployment's state is not affected; move the file out of runs/ if it is damaged (`thinkube-deploy history` lists the other runs)"
    )]
    RunUnreadable { path: PathBuf, reason: String },

    #[error(
        "the state file {path} cannot be read by this user (permission denied); it was left untouched. Check its owner and mode: it should belong to the user running the installer, with mode 0600"
    )]
    StateNotPermitted { path: PathBuf },

    #[error(
        "the state file {path} has schema version {found}, newer than this program understands (up to {supported}); it was left untouched. Use a newer thinkube-deploy"
    )]
    NewerSchema {
        path: PathBuf,
        found: u64,
        supported: u32,
    },

    #[error("could not {action} {path}: {source}{}", io_hint(.source))]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{path} cannot be imported: {reason}")]
    BadImport { path: PathBuf, reason: String },

    #[error("{0}")]
    Transition(#[from] TransitionError),

    #[error("the deployment has failed steps ({}); run `thinkube-deploy retry` to run them again, or `thinkube-deploy status` to see why they failed", .steps.join(", "))]
    DeploymentFailed { steps: Vec<String> },

    #[error("{0}")]
    RestartDue(#[from] RestartStillDue),

    #[error(
        "step `{step}` is still running in pid {pid}, left by a runner that stopped; wait for it to end or stop it (kill {pid}), then run the command again"
    )]
    StepStillRunning { step: String, pid: u32 },

    /// The plan no longer has steps that failed or were interrupted (exit 2): the
    /// user decides what happens to them, the plan does not.
    #[error(
        "the plan no longer has {}, which did not finish. A step that failed or was interrupted never leaves the record: put it back in the plan and run `thinkube-deploy retry`, or start over with `thinkube-deploy clean-state` (the deployment's history is kept). Nothing ran",
        .steps.join(", ")
    )]
    UnfinishedStepsRemoved { steps: Vec<String> },

    /// A host's SSH key is not trusted, or changed (exit 2); nothing ran.
    #[error("{0}")]
    HostKeys(String),

    /// An upstream plan's checkout is missing, at another commit or changed (exit 2);
    /// nothing ran.
    #[error("{0}")]
    Checkout(String),

    /// `plan check` found problems (exit 2), each named with its file.
    #[error("the plan check found {} problem{}, so nothing ran:\n  {}\nFix them (`thinkube-deploy plan check` lists them again), then run again", .problems.len(), if .problems.len() == 1 { "" } else { "s" }, .problems.join("\n  "))]
    PlanCheck { problems: Vec<String> },

    /// The hosts' pre-flight failed (exit 2), each host named with what to do;
    /// nothing ran.
    #[error("{} host{} not ready, so nothing ran:\n  {}\nFix what is named (`thinkube-deploy hosts check` checks again), or run with --skip-checks to go on without these checks", .problems.len(), if .problems.len() == 1 { " is" } else { "s are" }, .problems.join("\n  "))]
    Preflight { problems: Vec<String> },

    /// Bad usage or bad input: a wrong argument, file or choice (exit 2).
    #[error("{0}")]
    Usage(String),

    /// The shared state backend failed or cannot be used (exit 1).
    #[error(
        "the shared state at {url}: {reason}. What reached it stays whole; this home keeps every commit it made, and the next writer there uploads what is missing"
    )]
    Shared { url: String, reason: String },

    /// Another machine (or process) holds the shared lock (exit 3).
    #[error("{}", shared_locked_message(.url, .holder.as_deref()))]
    SharedLocked {
        url: String,
        holder: Option<Box<crate::state::shared::SharedHolder>>,
    },

    /// This writer's shared lock is gone: it stops before writing (exit 3).
    #[error(
        "stopped: this writer no longer holds the shared lock of {url}: {reason}. The shared state was not overwritten; run `thinkube-deploy status` to see who holds it, then resume"
    )]
    SharedLockLost { url: String, reason: String },

    /// A program or service asked on the user's behalf failed or answered what
    /// cannot be used (git, ansible-inventory, Azure): not bad input, exit 1.
    #[error("{0}")]
    Unavailable(String),

    /// A bug: the engine's own invariant did not hold (exit 1). Nothing was written.
    #[error(
        "internal error: {0}. Nothing was written; this is a bug in the installer: please report it with the output of `thinkube-deploy status --json`"
    )]
    Internal(String),

    /// `cancel` asked the running deployment to stop and it still runs (exit 1).
    #[error(
        "pid {pid} was asked to stop two minutes ago and still holds the state; it may be stuck: stop it with `kill -9 {pid}` (the next command records its running step as interrupted)"
    )]
    CancelTimedOut { pid: u32 },

    /// A signal came while waiting for another process's lock (exit 130).
    #[error(
        "stopped while waiting for the lock on {}; nothing ran and nothing was changed",
        .path.display()
    )]
    StoppedWaiting { path: PathBuf },

    /// A step's playbook is not where the plan says (exit 1); nothing ran.
    #[error("step `{step}`: playbook {} does not exist; check the plan{hint}. Nothing ran", .path.display())]
    PlaybookMissing {
        step: String,
        path: PathBuf,
        /// What else to check (the `--var` values the path is made of), or nothing.
        hint: &'static str,
    },

    #[error("{0}")]
    AnsibleMissing(String),

    /// A program the steps need is not installed (exit 1); nothing ran.
    #[error(
        "{why}, and `{tool}` is not installed: install it (`sudo apt-get install {tool}`, or `scripts/ensure-system` in a checkout), then run the command again. Nothing ran"
    )]
    ToolMissing { tool: &'static str, why: String },

    #[error(
        "the deployment was not resumed: {}. Nothing ran and no step changed; fix it (is the VPN connected? are the VMs started?), then resume",
        .problems.join("; ")
    )]
    NotReachable { problems: Vec<String> },

    #[error("invalid plan: {0}")]
    InvalidPlan(#[from] crate::plan::PlanError),

    #[error("{0}")]
    Choice(#[from] crate::plan::ChoiceError),
}

fn io_hint(source: &io::Error) -> &'static str {
    match source.raw_os_error() {
        Some(28) => {
            " (the disk is full: free some space and run the command again; the previous state is intact)"
        }
        Some(13) | Some(1) => {
            " (permission denied: check the owner and mode of the installer home)"
        }
        Some(30) => " (the file system is read-only)",
        _ => "",
    }
}

fn locked_message(path: &std::path::Path, holder: Option<&LockHolder>, pid: Option<u32>) -> String {
    let who = match (holder, pid) {
        (Some(h), _) => format!(
            "pid {} (operation `{}`, since {}, user {} on {}, {})",
            h.pid, h.operation, h.since, h.user, h.host, h.program
        ),
        (None, Some(pid)) => format!("pid {pid} (which has not recorded its operation yet)"),
        (None, None) => "another process (it has not said who yet)".to_string(),
    };
    format!(
        "the state in {} is locked by {who}; wait for it to finish, run the command again with --lock-timeout SECONDS to wait for it, or stop it with `thinkube-deploy cancel`",
        path.display()
    )
}

fn shared_locked_message(url: &str, holder: Option<&crate::state::shared::SharedHolder>) -> String {
    let who = match holder {
        Some(s) => {
            let h = &s.holder;
            format!(
                "pid {} on {} (operation `{}`, since {}, user {}, {})",
                h.pid, h.host, h.operation, h.since, h.user, h.program
            )
        }
        None => "another writer".to_string(),
    };
    format!(
        "the shared state at {url} is locked by {who}; wait for it to finish, or run the command again with --lock-timeout SECONDS to wait for it. A writer that was killed frees the lock by itself within {} seconds",
        crate::state::shared::LEASE_SECONDS
    )
}

impl EngineError {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// The exit code of the contract for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NoHome
            | Self::InvalidEnvName { .. }
            | Self::BadImport { .. }
            | Self::Transition(_)
            | Self::Usage(_)
            | Self::UnfinishedStepsRemoved { .. }
            | Self::HostKeys(_)
            | Self::Checkout(_)
            | Self::PlanCheck { .. }
            | Self::Preflight { .. }
            | Self::InvalidPlan(_)
            | Self::Choice(_) => exit::BAD_INPUT,
            Self::Locked { .. }
            | Self::StepStillRunning { .. }
            | Self::SharedLocked { .. }
            | Self::SharedLockLost { .. } => exit::LOCKED,
            Self::StoppedWaiting { .. } => exit::STOPPED,
            Self::DeploymentFailed { .. }
            | Self::RestartDue(_)
            | Self::AnsibleMissing(_)
            | Self::ToolMissing { .. }
            | Self::Internal(_)
            | Self::Unavailable(_)
            | Self::Shared { .. }
            | Self::CancelTimedOut { .. }
            | Self::PlaybookMissing { .. } => exit::FAILED,
            Self::Unreadable { .. }
            | Self::RunUnreadable { .. }
            | Self::NewerSchema { .. }
            | Self::StateNotPermitted { .. } => exit::UNREADABLE,
            Self::Io { .. } => exit::FAILED,
            Self::NotReachable { .. } => exit::GATE_BLOCKED,
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_user_gave_wrong_exits_2() {
        let cases = [
            (
                EngineError::Usage("an unknown flag".into()),
                exit::BAD_INPUT,
            ),
            (
                EngineError::Internal("cannot encode the state".into()),
                exit::FAILED,
            ),
            (EngineError::CancelTimedOut { pid: 7 }, exit::FAILED),
            (
                EngineError::Unavailable("could not clone URL: git says: no route".into()),
                exit::FAILED,
            ),
            (
                EngineError::PlaybookMissing {
                    step: "s".into(),
                    path: "/p/site.yaml".into(),
                    hint: "",
                },
                exit::FAILED,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error}");
        }
    }

    #[test]
    fn the_new_messages_say_what_to_do() {
        let m = EngineError::CancelTimedOut { pid: 42 }.to_string();
        assert!(m.contains("kill -9 42"), "{m}");
        let m = EngineError::PlaybookMissing {
            step: "k8s".into(),
            path: "/t/ansible/k8s.yaml".into(),
            hint: " and its --var values",
        }
        .to_string();
        assert_eq!(
            m,
            "step `k8s`: playbook /t/ansible/k8s.yaml does not exist; check the plan and its --var values. Nothing ran"
        );
    }
}
