//! `status`: the current deployment as the contract's JSON and as a human view.
//! Reads local files only and never takes or waits for the lock.

use std::fmt::Write as _;

use serde::Serialize;
use uuid::Uuid;

use crate::paths::Layout;
use crate::state::lock::{self, LockHolder};
use crate::state::model::{
    AttemptOutcome, DeploymentStatus, RunOutcome, SCHEMA_VERSION, StateFile, StepError, StepStatus,
};
use crate::state::store::{Loaded, Store, reconcile_dead};
use crate::timestamp::Timestamp;

/// `status --json`: the fields of the contract, plus a few more.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize)]
pub struct StatusView {
    pub schema_version: u32,
    /// `null` when no state exists yet.
    pub lineage: Option<Uuid>,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub serial: u64,
    pub environment: String,
    pub state_file: String,
    pub deployment: DeploymentView,
    pub progress: Progress,
    pub phases: Vec<PhaseView>,
    pub steps: Vec<StepView>,
    pub current_run: Option<RunView>,
    pub lock: LockView,
    /// Set when the file is in an older format (converted in memory; the next
    /// change writes the new format, keeping the original as a backup).
    pub converted_from: Option<String>,
    /// Set when the environment's state is shared (`--backend`): where, and how
    /// fresh what is shown is.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub shared: Option<SharedView>,
}

/// The shared backend of an environment, as `status` read it.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize)]
pub struct SharedView {
    pub backend: String,
    /// When the state shown was read from it.
    pub read_at: Timestamp,
    /// Set when it could not be reached now: why (the state shown is the cached one).
    pub unreachable: Option<String>,
    /// When a holder is shown: seconds until its lease expires unless renewed (by
    /// its last renewal, on its clock).
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub lease_expires_in_seconds: Option<u64>,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize)]
pub struct DeploymentView {
    pub id: Option<String>,
    pub status: DeploymentStatus,
    pub plan_id: Option<String>,
    pub plan_digest: Option<String>,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize, PartialEq, Eq, Default)]
pub struct Progress {
    pub completed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub interrupted: usize,
    pub pending: usize,
    pub running: usize,
    /// Applicable steps: all but the skipped ones.
    pub total: usize,
    /// `floor(100 * completed / total)`, 0 when total is 0.
    pub percentage: usize,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize)]
pub struct PhaseView {
    pub id: String,
    pub title: String,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepView {
    pub id: String,
    pub phase: String,
    pub title: String,
    pub status: StepStatus,
    pub attempts: usize,
    pub skip_reason: Option<String>,
    /// "changed since it ran", or "no longer enabled: ...".
    pub notice: Option<String>,
    pub last_error: Option<ErrorView>,
    /// Every attempt, oldest first: when it ran and how it ended (its log is read
    /// with the app's `step_log`).
    pub attempt_list: Vec<AttemptView>,
}

/// One attempt of a step, for the deploy screen's timings and log picker.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptView {
    pub number: u32,
    pub outcome: AttemptOutcome,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Whether it printed anything (a log file was started).
    pub has_log: bool,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorView {
    pub message: String,
    pub task: Option<String>,
    pub host: Option<String>,
    pub exit_code: Option<i32>,
    /// The last lines of output before the failure.
    pub output_tail: Vec<String>,
}

impl From<&StepError> for ErrorView {
    fn from(e: &StepError) -> Self {
        Self {
            message: e.message.clone(),
            task: e.task.clone(),
            host: e.host.clone(),
            exit_code: e.exit_code,
            output_tail: e.output_tail.clone(),
        }
    }
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize)]
pub struct RunView {
    pub run_id: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub outcome: RunOutcome,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize, Default)]
pub struct LockView {
    pub held: bool,
    pub pid: Option<u32>,
    pub operation: Option<String>,
    pub since: Option<Timestamp>,
    pub user: Option<String>,
    pub host: Option<String>,
}

impl From<Option<&LockHolder>> for LockView {
    fn from(holder: Option<&LockHolder>) -> Self {
        match holder {
            None => Self::default(),
            Some(h) => Self {
                held: true,
                pid: Some(h.pid),
                operation: Some(h.operation.clone()),
                since: Some(h.since),
                user: Some(h.user.clone()),
                host: Some(h.host.clone()),
            },
        }
    }
}

/// Counts steps by status for the progress line.
pub fn progress(state: &StateFile) -> Progress {
    let d = &state.deployment;
    let mut p = Progress {
        completed: d.count(StepStatus::Completed),
        failed: d.count(StepStatus::Failed),
        skipped: d.count(StepStatus::Skipped),
        interrupted: d.count(StepStatus::Interrupted),
        pending: d.count(StepStatus::Pending),
        running: d.count(StepStatus::Running),
        ..Progress::default()
    };
    p.total = d.steps.len() - p.skipped;
    p.percentage = (100 * p.completed).checked_div(p.total).unwrap_or(0);
    p
}

/// Builds the view. With no live lock holder, a step or run still marked running
/// belongs to a process that died: it is shown as the next writer will record it
/// (interrupted), without writing anything.
/// The status of an environment whose state is shared (`Store::shared`): the shared
/// state and its holder, read without the lock, and that state. The state read is
/// kept in the home's cache, which answers (saying how old it is) when the storage
/// cannot be reached.
pub fn shared(store: &Store, now: Timestamp) -> crate::error::Result<(StatusView, Option<Loaded>)> {
    let Some(shared) = store.shared() else {
        let loaded = store.load(now)?;
        let holder = store.lock_holder();
        return Ok((
            view(store.layout(), loaded.as_ref(), holder.as_ref(), now),
            loaded,
        ));
    };
    let read = shared
        .read_state()
        .and_then(|state| Ok((state, shared.holder()?)));
    let (bytes, holder, stale) = match read {
        Ok((state, holder)) => {
            let bytes = state.map(|(b, _)| b);
            if let Some(b) = &bytes {
                store.write_shared_cache(b, now);
            }
            (bytes, holder, None)
        }
        Err(e) => match store.read_shared_cache() {
            Some((bytes, read_at)) => (Some(bytes), None, Some((e.to_string(), read_at))),
            None => return Err(e),
        },
    };
    let loaded = match &bytes {
        Some(b) => Some(crate::state::store::parse_state(
            b,
            std::path::Path::new(shared.url()),
            now,
            Uuid::new_v4(),
        )?),
        None => None,
    };
    let lock_holder = holder.as_ref().map(|h| h.holder.clone());
    let mut v = view(store.layout(), loaded.as_ref(), lock_holder.as_ref(), now);
    v.state_file = shared.url().to_string();
    v.shared = Some(SharedView {
        backend: shared.url().to_string(),
        read_at: stale.as_ref().map_or(now, |(_, at)| *at),
        unreachable: stale.map(|(reason, _)| reason),
        lease_expires_in_seconds: holder.as_ref().and_then(|h| {
            let renewed = h.renewed_at?;
            let left = i64::from(crate::state::shared::LEASE_SECONDS)
                - (now.unix_seconds() - renewed.unix_seconds());
            Some(left.max(0) as u64)
        }),
    });
    Ok((v, loaded))
}

pub fn view(
    layout: &Layout,
    loaded: Option<&Loaded>,
    holder: Option<&LockHolder>,
    now: Timestamp,
) -> StatusView {
    let fallback;
    let (state, converted) = match loaded {
        Some(l) => (&l.state, l.converted_from.as_ref().map(|c| c.describe())),
        None => {
            fallback = StateFile::new(Uuid::nil(), now);
            (&fallback, None)
        }
    };
    let reconciled = if holder.is_none() {
        reconcile_dead(state, lock::process_alive).map(|r| r.state)
    } else {
        None
    };
    let state = reconciled.as_ref().unwrap_or(state);
    let d = &state.deployment;
    StatusView {
        schema_version: SCHEMA_VERSION,
        lineage: loaded.map(|l| l.state.lineage),
        serial: state.serial,
        environment: layout.env.as_str().to_string(),
        state_file: layout.state_file().display().to_string(),
        deployment: DeploymentView {
            id: d.id.clone(),
            status: d.status,
            plan_id: d.plan_id.clone(),
            plan_digest: d.plan_digest.clone(),
        },
        progress: progress(state),
        phases: d
            .phases
            .iter()
            .map(|p| PhaseView {
                id: p.id.clone(),
                title: p.title.clone(),
            })
            .collect(),
        steps: d
            .steps
            .iter()
            .map(|s| StepView {
                id: s.id.clone(),
                phase: s.phase.clone(),
                title: s.title.clone(),
                status: s.status,
                attempts: s.attempts.len(),
                skip_reason: s.skip_reason.clone(),
                notice: s.notice.clone(),
                last_error: s.last_error().map(ErrorView::from),
                attempt_list: s
                    .attempts
                    .iter()
                    .map(|a| AttemptView {
                        number: a.number,
                        outcome: a.outcome,
                        started_at: a.started_at,
                        finished_at: a.finished_at,
                        has_log: a.log_file.is_some(),
                    })
                    .collect(),
            })
            .collect(),
        current_run: state.current_run.as_ref().map(|r| RunView {
            run_id: r.run_id.clone(),
            started_at: r.started_at,
            finished_at: r.finished_at,
            outcome: r.outcome,
        }),
        lock: LockView::from(holder),
        converted_from: converted,
        shared: None,
    }
}

fn symbol(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Completed => "✓",
        StepStatus::Failed => "✗",
        StepStatus::Running => "▶",
        StepStatus::Pending => "○",
        StepStatus::Skipped => "–",
        StepStatus::Interrupted => "!",
    }
}

/// The human view: phases with a symbol per step, a progress line, the last error,
/// the lock, and what to do next.
pub(crate) fn render(v: &StatusView) -> String {
    let mut out = String::new();
    render_heading(&mut out, v);
    render_steps(&mut out, v);
    render_progress(&mut out, v);
    render_last_error(&mut out, v);
    render_run_and_lock(&mut out, v);
    render_hint(&mut out, v);
    out
}

/// The deployment's line (or that there is none), and the format it was read from.
fn render_heading(out: &mut String, v: &StatusView) {
    let d = &v.deployment;
    let env = if v.environment == "default" {
        String::new()
    } else {
        format!(" [environment {}]", v.environment)
    };
    match &d.id {
        None if v.steps.is_empty() => {
            let _ = writeln!(out, "No deployment yet{env}.");
        }
        _ => {
            let _ = writeln!(
                out,
                "Deployment {} (plan {}){env}: {}",
                d.id.as_deref().unwrap_or("-"),
                d.plan_id.as_deref().unwrap_or("-"),
                d.status.as_str().replace('_', " ")
            );
        }
    }
    if let Some(c) = &v.converted_from {
        let _ = writeln!(
            out,
            "  (read from {c}; the next change saves it in the current format)"
        );
    }
}

/// Each phase's steps, with their status, attempts, skip reasons and notices.
fn render_steps(out: &mut String, v: &StatusView) {
    let mut phases: Vec<(&str, &str)> = v
        .phases
        .iter()
        .map(|p| (p.id.as_str(), p.title.as_str()))
        .collect();
    for s in &v.steps {
        if !phases.iter().any(|(id, _)| *id == s.phase) {
            phases.push((&s.phase, &s.phase));
        }
    }
    let width = v
        .steps
        .iter()
        .map(|s| s.id.chars().count())
        .max()
        .unwrap_or(0);
    for (id, title) in phases {
        let steps: Vec<&StepView> = v.steps.iter().filter(|s| s.phase == id).collect();
        if steps.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}");
        for s in steps {
            let mut line = format!("  {} {:width$}  {}", symbol(s.status), s.id, s.title);
            match s.status {
                StepStatus::Skipped => {
                    if let Some(r) = &s.skip_reason {
                        let _ = write!(line, " (skipped: {r})");
                    }
                }
                StepStatus::Pending if s.attempts == 0 => {}
                st => {
                    let _ = write!(line, " ({}, attempt {})", st.as_str(), s.attempts);
                }
            }
            if let Some(n) = &s.notice {
                let _ = write!(line, " [{n}]");
            }
            let _ = writeln!(out, "{line}");
        }
    }
}

/// How far the deployment is, counted by status.
fn render_progress(out: &mut String, v: &StatusView) {
    let p = &v.progress;
    if p.total > 0 || p.skipped > 0 {
        let mut parts = vec![format!(
            "{} of {} completed ({}%)",
            p.completed, p.total, p.percentage
        )];
        for (n, what) in [
            (p.failed, "failed"),
            (p.running, "running"),
            (p.interrupted, "interrupted"),
            (p.pending, "pending"),
            (p.skipped, "skipped"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        let _ = writeln!(out, "\nProgress: {}", parts.join(" · "));
    }
}

/// The first failed step's last error, with its task, host and exit code.
fn render_last_error(out: &mut String, v: &StatusView) {
    if let Some((step, e)) = v
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Failed)
        .find_map(|s| s.last_error.as_ref().map(|e| (s, e)))
    {
        let mut detail = Vec::new();
        if let Some(t) = &e.task {
            detail.push(format!("task \"{t}\""));
        }
        if let Some(h) = &e.host {
            detail.push(format!("host {h}"));
        }
        if let Some(c) = e.exit_code {
            detail.push(format!("exit code {c}"));
        }
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", detail.join(", "))
        };
        let _ = writeln!(out, "Last error: {}: {}{detail}", step.id, e.message);
    }
}

/// The current run, and who holds the lock.
fn render_run_and_lock(out: &mut String, v: &StatusView) {
    if let Some(r) = &v.current_run {
        let _ = writeln!(
            out,
            "Run: {} started {} — {}",
            r.run_id,
            r.started_at,
            r.outcome.as_str()
        );
    }
    match (&v.lock.pid, &v.lock.operation, &v.lock.since) {
        (Some(pid), Some(op), Some(since)) => {
            let host = match (&v.shared, &v.lock.host) {
                (Some(_), Some(host)) => format!(" on {host}"),
                _ => String::new(),
            };
            let _ = write!(out, "Lock: held by pid {pid}{host} ({op}) since {since}");
            if let Some(left) = v.shared.as_ref().and_then(|s| s.lease_expires_in_seconds) {
                let _ = write!(out, "; its lease expires in {left} s unless renewed");
            }
            out.push('\n');
        }
        _ => {
            let _ = writeln!(out, "Lock: free");
        }
    }
    if let Some(s) = &v.shared {
        match &s.unreachable {
            None => {
                let _ = writeln!(out, "Shared: {} (read {})", s.backend, s.read_at);
            }
            Some(reason) => {
                let _ = writeln!(
                    out,
                    "Shared: {} cannot be reached now ({reason}); showing the state read at {}",
                    s.backend, s.read_at
                );
            }
        }
    }
}

/// What to run next, for a deployment that needs it.
fn render_hint(out: &mut String, v: &StatusView) {
    let d = &v.deployment;
    let hint = match d.status {
        DeploymentStatus::Failed => {
            Some("Run `thinkube-deploy retry` to run the failed step again.")
        }
        DeploymentStatus::Interrupted => {
            Some("Run `thinkube-deploy resume` to continue where it stopped.")
        }
        DeploymentStatus::AwaitingRestart => {
            Some("Restart the machine, then run `thinkube-deploy deploy` to continue.")
        }
        DeploymentStatus::InProgress if !v.lock.held => {
            Some("Run `thinkube-deploy resume` to continue.")
        }
        _ => None,
    };
    if let Some(h) = hint {
        let _ = writeln!(out, "{h}");
    }
}
