//! Runs one step's process: a command, or `ansible-playbook` with our JSON-lines
//! callback. Output is streamed line by line to the attempt's log file and to the
//! caller's progress sink; Ansible's events say which task failed on which host.
//!
//! The child runs in its own process group, so stopping a step (SIGINT/SIGTERM to
//! the runner, or `cancel`) stops everything it started.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::secrets::Redactor;
use crate::state::bounds::{self, TAIL_LINES};
use crate::state::lock::start_ticks;
use crate::state::model::{ProcessRef, StepError};

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
    /// The event with secrets hidden in its decoded text too (JSON escapes such as
    /// `\u00e4` hide a value from a mask applied to the raw line).
    fn redacted(self, redact: &Redactor) -> Self {
        let hide = |v: Option<String>| v.map(|t| redact.apply(t));
        Self {
            host: hide(self.host),
            task: hide(self.task),
            play: hide(self.play),
            msg: hide(self.msg),
            item: hide(self.item),
            ..self
        }
    }

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
    /// What to know besides the outcome (processes it left holding its output, a
    /// log that could not be written), as sentences.
    pub notes: Vec<String>,
}

/// Bytes of one line the runner holds in memory: a longer line reaches the log
/// whole, in pieces of this size (no newline added), and each piece is shown and
/// kept as a line of its own.
pub(crate) const PIECE_BYTES: usize = 1 << 20;
/// Bytes read from a pipe at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Pieces waiting between a pipe's reader and the runner: with `PIECE_BYTES`, what
/// bounds the output held in memory, however fast a step prints.
const PIECES_IN_FLIGHT: usize = 8;
/// How often the runner looks at the step's process and the stop flag.
const TICK: Duration = Duration::from_millis(50);
/// How long the runner still reads a step's output after the step's process ended:
/// a daemon it started may hold the pipes open for as long as it lives.
pub(crate) const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// A piece of one stream's output: a whole line, or part of a very long one.
struct Piece {
    stream: Stream,
    text: String,
    /// The piece ends its line (false: the line goes on in the next piece).
    ends_line: bool,
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
    let mut child = crate::run::spawn::spawn(cmd)?;
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
    let pipes = pipe_inodes(&child);
    let (tx, rx) = mpsc::sync_channel::<Piece>(PIECES_IN_FLIGHT);
    if let Some(s) = child.stdout.take() {
        spawn_reader(Box::new(s), Stream::Stdout, cmd.redact.clone(), tx.clone());
    }
    if let Some(s) = child.stderr.take() {
        spawn_reader(Box::new(s), Stream::Stderr, cmd.redact.clone(), tx.clone());
    }
    drop(tx);
    let mut collected = Collected::new(cmd, log);
    let mut stop_sent: Option<Instant> = None;
    let mut exited: Option<(std::process::ExitStatus, Instant)> = None;
    let mut open = true;
    loop {
        if open {
            match rx.recv_timeout(TICK) {
                Ok(piece) => collected.take(piece, out),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
            }
        } else {
            std::thread::sleep(TICK);
        }
        if exited.is_none() {
            exited = child
                .try_wait()
                .map_err(|e| EngineError::io("wait for", &cmd.program, e))?
                .map(|status| (status, Instant::now()));
        }
        let stopping = stop.load(Ordering::SeqCst);
        match exited {
            None if stopping => match stop_sent {
                None => {
                    signal_group(pid, libc::SIGTERM);
                    stop_sent = Some(Instant::now());
                }
                Some(at) if at.elapsed() > STOP_GRACE => signal_group(pid, libc::SIGKILL),
                Some(_) => {}
            },
            None => {}
            // The step's process ended: what is still unread is only waited for a
            // moment, and not at all once a stop was asked for.
            Some(_) if !open => break,
            Some((_, at)) if stopping || at.elapsed() > OUTPUT_GRACE => {
                collected.left_running(&pipes, pid, out);
                break;
            }
            Some(_) => {}
        }
    }
    // Whatever is already waiting is kept; the readers end at their next piece.
    while let Ok(piece) = rx.try_recv() {
        collected.take(piece, out);
    }
    drop(rx);
    collected.report_log_error(out);
    let Some((status, _)) = exited else {
        return Err(EngineError::Internal(
            "the step's process was not waited for".into(),
        ));
    };
    // A step that exited on its own keeps its outcome even if a stop came late.
    let stopped = stop_sent.is_some() && !status.success();
    Ok(collected.finish(status, stopped))
}

/// What the runner keeps of a step's output while it runs: the log, the tail, the
/// first failure Ansible reported, and what went wrong with the log itself.
struct Collected<'a> {
    cmd: &'a StepCommand,
    log: &'a mut dyn Write,
    log_error: Option<std::io::Error>,
    tail: VecDeque<String>,
    /// The last line of the tail goes on in the next piece.
    tail_open: bool,
    failure: Option<AnsibleEvent>,
    saw_events: bool,
    notes: Vec<String>,
}

impl<'a> Collected<'a> {
    fn new(cmd: &'a StepCommand, log: &'a mut dyn Write) -> Self {
        Self {
            cmd,
            log,
            log_error: None,
            tail: VecDeque::with_capacity(TAIL_LINES),
            tail_open: false,
            failure: None,
            saw_events: false,
            notes: Vec::new(),
        }
    }

    fn take(&mut self, piece: Piece, out: &mut dyn FnMut(Output)) {
        let text = self.cmd.redact.apply(piece.text);
        let whole_line = piece.ends_line && !self.tail_open;
        let event = (self.cmd.ansible && piece.stream == Stream::Stdout && whole_line)
            .then(|| serde_json::from_str::<AnsibleEvent>(&text).ok())
            .flatten()
            .map(|e| e.redacted(&self.cmd.redact));
        let Some(event) = event else {
            self.write_log(text.as_bytes(), piece.ends_line);
            self.keep(&text, piece.ends_line);
            out(Output::Line {
                stream: piece.stream,
                line: text,
            });
            return;
        };
        self.saw_events = true;
        if event.event.is_failure() && event.ignore_errors != Some(true) && self.failure.is_none() {
            self.failure = Some(event.clone());
        }
        let human = event.human();
        if !human.is_empty() {
            self.write_log(human.as_bytes(), true);
            self.keep(&human, true);
        }
        out(Output::Task { event });
    }

    fn write_log(&mut self, bytes: &[u8], ends_line: bool) {
        if self.log_error.is_some() {
            return;
        }
        let result = self.log.write_all(bytes).and_then(|()| {
            if ends_line {
                self.log.write_all(b"\n")
            } else {
                Ok(())
            }
        });
        if let Err(e) = result {
            self.log_error = Some(e);
        }
    }

    /// Keeps a piece in the tail, cut to what is stored: the start of a long line,
    /// not each of its pieces.
    fn keep(&mut self, text: &str, ends_line: bool) {
        if !self.tail_open {
            if self.tail.len() == TAIL_LINES {
                self.tail.pop_front();
            }
            self.tail
                .push_back(bounds::stored(text, bounds::LINE_BYTES));
        }
        self.tail_open = !ends_line;
    }

    /// The step's process ended, but others still hold its output: says which, in
    /// the log and the output.
    fn left_running(&mut self, pipes: &[u64], pgid: u32, out: &mut dyn FnMut(Output)) {
        let holders = pipe_holders(pipes, pgid);
        let who = if holders.is_empty() {
            "processes it started".to_string()
        } else {
            holders.join(", ")
        };
        let note = format!(
            "[thinkube] the step's process ended, but {who} still hold its output; stopped reading after {} s and left them running",
            OUTPUT_GRACE.as_secs()
        );
        self.note(note, out);
    }

    fn note(&mut self, note: String, out: &mut dyn FnMut(Output)) {
        self.write_log(note.as_bytes(), true);
        out(Output::Line {
            stream: Stream::Stderr,
            line: note.clone(),
        });
        self.notes.push(note);
    }

    /// Says so when the log could not be written (a full disk): the output shows
    /// it, and the attempt's record keeps it as a note.
    fn report_log_error(&mut self, out: &mut dyn FnMut(Output)) {
        let flushed = self.log.flush();
        if let Some(e) = self.log_error.take().or(flushed.err()) {
            let note =
                format!("[thinkube] the step's log could not be written ({e}): it is incomplete");
            out(Output::Line {
                stream: Stream::Stderr,
                line: note.clone(),
            });
            self.notes.push(note);
        }
    }

    fn finish(self, status: std::process::ExitStatus, stopped: bool) -> Finished {
        let exit_code = status.code();
        if status.success() || stopped {
            return Finished {
                exit_code,
                stopped,
                error: None,
                notes: self.notes,
            };
        }
        let how = match (exit_code, status.signal()) {
            (Some(c), _) => format!("exited with code {c}"),
            (None, Some(s)) => format!("was killed by signal {s}"),
            _ => "ended abnormally".into(),
        };
        let output_tail: Vec<String> = self.tail.into_iter().collect();
        let error = match self.failure {
            Some(f) => ansible_failure(f, &how, exit_code, output_tail),
            None => {
                let what = match (self.cmd.ansible, self.saw_events) {
                    (false, _) => "the command",
                    (true, true) => "ansible-playbook",
                    (true, false) => "ansible-playbook (before running any task)",
                };
                exit_failure(what, &how, exit_code, output_tail)
            }
        };
        Finished {
            exit_code,
            stopped: false,
            error: Some(error),
            notes: self.notes,
        }
    }
}

fn ansible_failure(
    f: AnsibleEvent,
    how: &str,
    exit_code: Option<i32>,
    output_tail: Vec<String>,
) -> StepError {
    // A connection lost while Ansible copies a module comes as a failed task; it is
    // the host that could not be reached all the same.
    let unreachable = f.event == EventName::Unreachable
        || f.msg
            .as_deref()
            .is_some_and(|m| m.starts_with("Failed to connect to the host via ssh"));
    let message = match unreachable {
        true => format!(
            "host {}unreachable: {}",
            f.host
                .as_deref()
                .map(|h| format!("{h} "))
                .unwrap_or_default(),
            f.msg.clone().unwrap_or_default()
        ),
        false => f
            .msg
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("task failed; ansible-playbook {how}")),
    };
    StepError {
        message,
        task: f.task,
        host: f.host,
        exit_code,
        output_tail,
    }
}

fn exit_failure(
    what: &str,
    how: &str,
    exit_code: Option<i32>,
    output_tail: Vec<String>,
) -> StepError {
    // Ansible's own error line ("ERROR! ..." before 2.19, "[ERROR]: ..." after) and
    // where it points, rather than the last line, which is the caret under the
    // offending line or an empty one.
    let tail = output_tail.join("\n");
    let said = match crate::run::plan_check::ansible_error(&tail) {
        (m, Some((file, line))) if has_error_line(&output_tail) => {
            Some(format!("{m} ({file}, line {line})"))
        }
        (m, None) if has_error_line(&output_tail) => Some(m),
        _ => output_tail
            .iter()
            .rev()
            .map(|l| l.trim())
            .find(|l| !l.is_empty() && !is_caret(l))
            .map(str::to_string),
    };
    StepError {
        message: match said {
            Some(l) => format!("{what} {how}: {l}"),
            None => format!("{what} {how}"),
        },
        task: None,
        host: None,
        exit_code,
        output_tail,
    }
}

fn has_error_line(lines: &[String]) -> bool {
    lines.iter().any(|l| {
        let t = l.trim_start();
        t.starts_with("ERROR! ") || t.starts_with("[ERROR]: ")
    })
}

/// `^ here`, `^ column 7` and the like: where Ansible points, not what it says.
fn is_caret(line: &str) -> bool {
    line.starts_with('^')
}

/// Reads a pipe in bounded chunks and sends it on as lines, a line longer than
/// `PIECE_BYTES` in pieces. A piece never ends inside a secret (so each piece can
/// be masked on its own) nor inside a UTF-8 character.
fn spawn_reader(
    mut stream: Box<dyn Read + Send>,
    which: Stream,
    redact: Redactor,
    tx: mpsc::SyncSender<Piece>,
) {
    std::thread::spawn(move || {
        let send = |bytes: &[u8], ends_line: bool| {
            let bytes = bytes
                .strip_suffix(b"\r")
                .filter(|_| ends_line)
                .unwrap_or(bytes);
            tx.send(Piece {
                stream: which,
                text: String::from_utf8_lossy(bytes).into_owned(),
                ends_line,
            })
            .is_ok()
        };
        let margin = redact.longest();
        let mut pending: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            let n = match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            pending.extend_from_slice(&chunk[..n]);
            let mut start = 0;
            while let Some(i) = pending[start..].iter().position(|&b| b == b'\n') {
                if !send(&pending[start..start + i], true) {
                    return;
                }
                start += i + 1;
            }
            pending.drain(..start);
            while pending.len() >= PIECE_BYTES + margin {
                let at = split_point(&pending, PIECE_BYTES, redact.patterns());
                if !send(&pending[..at], false) {
                    return;
                }
                pending.drain(..at);
            }
        }
        if !pending.is_empty() {
            send(&pending, true);
        }
    });
}

/// Where to cut `buf` near `at`: not inside an occurrence of a pattern, not inside
/// a UTF-8 character. Moves forward only, by less than the longest pattern plus a
/// character, so `buf` must hold that much beyond `at`.
fn split_point(buf: &[u8], at: usize, patterns: &[String]) -> usize {
    let mut at = at;
    loop {
        let before = at;
        while at < buf.len() && (buf[at] & 0xC0) == 0x80 {
            at += 1;
        }
        for p in patterns.iter().map(String::as_bytes) {
            let from = at.saturating_sub(p.len() - 1);
            let to = (at + p.len() - 1).min(buf.len());
            if let Some(i) = buf[from..to].windows(p.len()).position(|w| w == p) {
                at = at.max(from + i + p.len());
            }
        }
        if at == before || at >= buf.len() {
            return at.min(buf.len());
        }
    }
}

/// The inodes of the step's output pipes, to find who else holds them.
fn pipe_inodes(child: &std::process::Child) -> Vec<u64> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fds = [
        child.stdout.as_ref().map(|s| s.as_fd()),
        child.stderr.as_ref().map(|s| s.as_fd()),
    ];
    fds.into_iter()
        .flatten()
        .filter_map(|fd| fd.try_clone_to_owned().ok())
        .filter_map(|fd| std::fs::File::from(fd).metadata().ok())
        .map(|m| m.ino())
        .collect()
}

/// Processes (other than the runner) holding one of `pipes`, or in the step's
/// process group, as `pid 123 (sleep)`.
fn pipe_holders(pipes: &[u64], pgid: u32) -> Vec<String> {
    let me = std::process::id();
    let targets: Vec<String> = pipes.iter().map(|i| format!("pipe:[{i}]")).collect();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let dir = entry.path();
        let in_group = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<u32>().ok())
            })
            == Some(pgid);
        let holds = std::fs::read_dir(dir.join("fd")).is_ok_and(|fds| {
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|l| targets.iter().any(|t| l.as_os_str() == t.as_str()))
            })
        });
        if in_group || holds {
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            found.push(format!("pid {pid} ({})", comm.trim()));
        }
    }
    found.sort();
    found
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
/// A program of this name in one of `path_var`'s folders.
pub(crate) fn on_path(name: &str, path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path_var?)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The ansible-playbook named by `THINKUBE_ANSIBLE_PLAYBOOK` (unset or empty: none),
/// which [`find_ansible_playbook`] takes before the installer's own.
pub fn ansible_override() -> Option<PathBuf> {
    std::env::var_os("THINKUBE_ANSIBLE_PLAYBOOK")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

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
    if let Some(found) = on_path("ansible-playbook", path_var) {
        return Ok(found);
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
