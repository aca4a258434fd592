//! Runs one step's process: a command, or `ansible-playbook` with our JSON-lines
//! callback. Output is streamed line by line to the attempt's log file and to the
//! caller's progress sink; Ansible's events say which task failed on which host.
//!
//! The child runs in its own process group, so stopping a step (SIGINT/SIGTERM to
//! the runner, or `cancel`) stops everything it started.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::secrets::Redactor;
use crate::state::lock::start_ticks;
use crate::state::model::{ProcessRef, StepError};

/// Lines of output kept for a failed step's error.
pub(crate) const TAIL_LINES: usize = 20;

/// How long a stopped step's processes get to exit after SIGTERM before SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);

/// One process to run.
#[derive(Debug, Clone)]
pub struct StepCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// Parse stdout as our callback's JSON lines.
    pub ansible: bool,
    /// Secret values to hide in the output before it is logged, kept or shown.
    pub redact: Redactor,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of the callback plugin's output.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnsibleEvent {
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub event: EventName,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub play: Option<String>,
    #[serde(default)]
    pub msg: Option<String>,
    #[serde(default)]
    pub item: Option<String>,
    #[serde(default)]
    pub ignore_errors: Option<bool>,
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub rc: Option<i64>,
}

/// What a line of our callback plugin (`ansible/callback_plugins/thinkube_json.py`)
/// reports. A name this program does not know is kept as it is (`Other`), so a newer
/// plugin's lines still reach the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum EventName {
    PlaybookStart,
    PlayStart,
    TaskStart,
    Ok,
    Changed,
    Failed,
    Unreachable,
    Skipped,
    ItemOk,
    ItemFailed,
    ItemSkipped,
    Stats,
    Other(String),
}

impl EventName {
    const NAMES: [(&'static str, EventName); 12] = [
        ("playbook_start", EventName::PlaybookStart),
        ("play_start", EventName::PlayStart),
        ("task_start", EventName::TaskStart),
        ("ok", EventName::Ok),
        ("changed", EventName::Changed),
        ("failed", EventName::Failed),
        ("unreachable", EventName::Unreachable),
        ("skipped", EventName::Skipped),
        ("item_ok", EventName::ItemOk),
        ("item_failed", EventName::ItemFailed),
        ("item_skipped", EventName::ItemSkipped),
        ("stats", EventName::Stats),
    ];

    /// The plugin's name for it.
    pub fn as_str(&self) -> &str {
        match self {
            EventName::Other(name) => name,
            known => Self::NAMES
                .iter()
                .find(|(_, n)| n == known)
                .map_or("", |(name, _)| name),
        }
    }

    /// A task failed on a host (or for a loop item), or the host was unreachable.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            EventName::Failed | EventName::Unreachable | EventName::ItemFailed
        )
    }
}

impl From<String> for EventName {
    fn from(name: String) -> Self {
        Self::NAMES
            .iter()
            .find(|(known, _)| *known == name)
            .map_or(EventName::Other(name), |(_, n)| n.clone())
    }
}

impl From<&str> for EventName {
    fn from(name: &str) -> Self {
        EventName::from(name.to_string())
    }
}

impl From<EventName> for String {
    fn from(name: EventName) -> Self {
        name.as_str().to_string()
    }
}

impl AnsibleEvent {
    /// The event as a log line a person reads.
    pub fn human(&self) -> String {
        let host = self.host.as_deref().unwrap_or("?");
        let msg = self
            .msg
            .as_deref()
            .filter(|m| !m.is_empty())
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let item = self
            .item
            .as_deref()
            .map(|i| format!(" (item={i})"))
            .unwrap_or_default();
        match &self.event {
            EventName::PlayStart => format!("PLAY [{}]", self.play.as_deref().unwrap_or("")),
            EventName::TaskStart => format!("TASK [{}]", self.task.as_deref().unwrap_or("")),
            EventName::Failed if self.ignore_errors == Some(true) => {
                format!("failed: [{host}]{msg} (ignored)")
            }
            EventName::Stats | EventName::PlaybookStart => String::new(),
            other => format!(
                "{}: [{host}]{item}{msg}",
                other.as_str().trim_start_matches("item_")
            ),
        }
    }
}

/// What the runner reports while a step runs.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Output {
    Line { stream: Stream, line: String },
    Task { event: AnsibleEvent },
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub exit_code: Option<i32>,
    /// Stopped on request (the step is interrupted, not failed).
    pub stopped: bool,
    /// Set when the step failed.
    pub error: Option<StepError>,
}

/// Spawns `cmd` in its own process group. `on_spawn` is told the child (to record
/// its pid durably) before any output is read; if it fails the child is stopped.
/// Every line goes to `log` and to `out`. `stop` asks the step to end.
pub fn run(
    cmd: &StepCommand,
    log: &mut dyn Write,
    out: &mut dyn FnMut(Output),
    stop: &AtomicBool,
    on_spawn: &mut dyn FnMut(ProcessRef) -> Result<()>,
) -> Result<Finished> {
    let mut command = Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .envs(&cmd.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(cwd) = &cmd.cwd {
        command.current_dir(cwd);
    }
    // SAFETY: prctl(2) with PR_SET_PDEATHSIG is async-signal-safe and touches no
    // memory; it runs in the child between fork and exec. If the runner is killed
    // (SIGKILL gives it no chance to clean up), the step gets SIGTERM instead of
    // running on unobserved.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            );
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| EngineError::io("start", &cmd.program, e))?;
    let pid = child.id();
    let process = ProcessRef {
        pid,
        start_ticks: start_ticks(pid),
    };
    if let Err(e) = on_spawn(process) {
        signal_group(pid, libc::SIGKILL);
        let _ = child.wait();
        return Err(e);
    }
    let (tx, rx) = mpsc::channel::<(Stream, String)>();
    let readers = [
        child
            .stdout
            .take()
            .map(|s| spawn_reader(Box::new(s), Stream::Stdout, tx.clone())),
        child
            .stderr
            .take()
            .map(|s| spawn_reader(Box::new(s), Stream::Stderr, tx.clone())),
    ];
    drop(tx);
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let mut failure: Option<AnsibleEvent> = None;
    let mut saw_events = false;
    let mut stop_sent: Option<Instant> = None;
    let keep = |line: String, tail: &mut VecDeque<String>, log: &mut dyn Write| {
        let _ = writeln!(log, "{line}");
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((stream, line)) => {
                let line = cmd.redact.apply(line);
                let event = (cmd.ansible && stream == Stream::Stdout)
                    .then(|| serde_json::from_str::<AnsibleEvent>(&line).ok())
                    .flatten();
                match event {
                    Some(event) => {
                        saw_events = true;
                        if event.event.is_failure()
                            && event.ignore_errors != Some(true)
                            && failure.is_none()
                        {
                            failure = Some(event.clone());
                        }
                        let human = event.human();
                        if !human.is_empty() {
                            keep(human, &mut tail, log);
                        }
                        out(Output::Task { event });
                    }
                    None => {
                        keep(line.clone(), &mut tail, log);
                        out(Output::Line { stream, line });
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if stop.load(Ordering::SeqCst) {
            match stop_sent {
                None => {
                    signal_group(pid, libc::SIGTERM);
                    stop_sent = Some(Instant::now());
                }
                Some(at) if at.elapsed() > STOP_GRACE => signal_group(pid, libc::SIGKILL),
                _ => {}
            }
        }
    }
    for r in readers.into_iter().flatten() {
        let _ = r.join();
    }
    let status = child
        .wait()
        .map_err(|e| EngineError::io("wait for", &cmd.program, e))?;
    let _ = log.flush();
    // A step that exited on its own keeps its outcome even if a stop came late.
    let stopped = stop_sent.is_some() && !status.success();
    let exit_code = status.code();
    if status.success() || stopped {
        return Ok(Finished {
            exit_code,
            stopped,
            error: None,
        });
    }
    let output_tail: Vec<String> = tail.into_iter().collect();
    let how = match (exit_code, status.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => "ended abnormally".into(),
    };
    let error = match failure {
        Some(f) => StepError {
            message: match f.event {
                EventName::Unreachable => {
                    format!("host unreachable: {}", f.msg.clone().unwrap_or_default())
                }
                _ => f
                    .msg
                    .clone()
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| format!("task failed; ansible-playbook {how}")),
            },
            task: f.task,
            host: f.host,
            exit_code,
            output_tail,
        },
        None => {
            let last = output_tail
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .cloned();
            let what = if cmd.ansible {
                if saw_events {
                    "ansible-playbook"
                } else {
                    "ansible-playbook (before running any task)"
                }
            } else {
                "the command"
            };
            StepError {
                message: match last {
                    Some(l) => format!("{what} {how}: {l}"),
                    None => format!("{what} {how}"),
                },
                task: None,
                host: None,
                exit_code,
                output_tail,
            }
        }
    };
    Ok(Finished {
        exit_code,
        stopped: false,
        error: Some(error),
    })
}

fn spawn_reader(
    stream: Box<dyn Read + Send>,
    which: Stream,
    tx: mpsc::Sender<(Stream, String)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .to_string();
                    if tx.send((which, line)).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

/// Sends a signal to a process group (the step and everything it started).
pub(crate) fn signal_group(pgid: u32, signal: libc::c_int) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is
        // involved. An error (the group is gone) is fine to ignore.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Where `ansible-playbook` is: `configured` (THINKUBE_ANSIBLE_PLAYBOOK), then the
/// installer's own environment (`<home>/venv`), then PATH.
pub(crate) fn find_ansible_playbook(
    configured: Option<&Path>,
    home: &Path,
    path_var: Option<&std::ffi::OsStr>,
) -> Result<PathBuf> {
    if let Some(p) = configured {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        return Err(EngineError::AnsibleMissing(format!(
            "THINKUBE_ANSIBLE_PLAYBOOK points to {}, which does not exist",
            p.display()
        )));
    }
    let own = home.join("venv/bin/ansible-playbook");
    if own.is_file() {
        return Ok(own);
    }
    if let Some(paths) = path_var {
        for dir in std::env::split_paths(paths) {
            let candidate = dir.join("ansible-playbook");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(EngineError::AnsibleMissing(format!(
        "ansible-playbook is not installed: run `thinkube-deploy setup` to install ansible-core into {}, or put ansible-playbook on PATH",
        home.join("venv").display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_read_and_write_as_the_plugin_spells_them() {
        for (name, known) in EventName::NAMES {
            assert_eq!(EventName::from(name), known);
            assert_eq!(known.as_str(), name);
            let json = serde_json::to_string(&known).unwrap();
            assert_eq!(json, format!("\"{name}\""));
        }
        let newer: AnsibleEvent =
            serde_json::from_str(r#"{"event":"item_retry","host":"h","msg":"again"}"#).unwrap();
        assert_eq!(newer.event, EventName::Other("item_retry".into()));
        assert_eq!(newer.human(), "retry: [h]: again");
        assert!(!newer.event.is_failure());
        assert!(EventName::from("item_failed").is_failure());
    }
}
