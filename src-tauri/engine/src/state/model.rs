//! The state file's format (schema version 3): the deployment, its steps and
//! attempts, the latest run, cached facts, and the tail of the audit trail.
//!
//! These types are the wire format of `deployment-state.json`, of `runs/*.json` and of
//! `events.jsonl`. Their JSON Schema is generated into `docs/deployment-state.schema.json`.
//! Legal changes to a deployment go through `lifecycle`, never by editing these
//! structures directly outside the engine.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::timestamp::Timestamp;

/// The schema version this program writes. Older versions are migrated on load;
/// newer ones are refused (exit 4) and left untouched.
pub(crate) const SCHEMA_VERSION: u32 = 3;

/// The whole state file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Thinkube installer deployment state")]
pub struct StateFile {
    /// Version of this format; see `docs/state-schema.md`.
    pub schema_version: u32,
    /// Fixed when the state is first created; two states of different lineages are
    /// never merged (a restored copy must carry the same lineage).
    pub lineage: Uuid,
    /// Increases by exactly one on every committed change.
    pub serial: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub deployment: DeploymentRecord,
    /// The most recent run of this deployment (running or finished). Finished runs are
    /// also written to `runs/<run_id>.json`, which is where history reads them.
    pub current_run: Option<RunRecord>,
    #[serde(default)]
    pub facts: Facts,
    /// Sequence number of the last event of the audit trail.
    pub last_event_seq: u64,
    /// The events of the last commit, so a trail cut short by a crash can be repaired.
    #[serde(default)]
    pub recent_events: Vec<Event>,
}

/// Status of a whole deployment. Derived rules (checked on load):
/// all steps completed or skipped => `completed`; a failed step and nothing running =>
/// `failed`, never `completed`.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    NotStarted,
    InProgress,
    Completed,
    Failed,
    Interrupted,
    AwaitingRestart,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotStarted => "not_started",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::AwaitingRestart => "awaiting_restart",
        }
    }
}

/// Status of one step.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Skipped,
    Interrupted,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Interrupted => "interrupted",
        }
    }
}

/// The deployment: what is being deployed, with which answers, and every step's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentRecord {
    /// `null` until a deployment has started (or been imported).
    pub id: Option<String>,
    pub status: DeploymentStatus,
    pub plan_id: Option<String>,
    /// A built-in plan's name or a plan file's path: where resume finds the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_source: Option<String>,
    /// sha256 of the plan's content when the deployment started (or last resumed).
    pub plan_digest: Option<String>,
    /// Non-secret wizard answers, flags and variables.
    #[serde(default)]
    pub configuration: Configuration,
    /// Phases in plan order.
    #[serde(default)]
    pub phases: Vec<PhaseRecord>,
    /// Steps in plan order; ids are unique.
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Set while `awaiting_restart`: which step asked for it and the boot it ran in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartRecord>,
    /// Set when this deployment was converted from another format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrated_from: Option<MigrationRecord>,
}

impl DeploymentRecord {
    /// A deployment that has not started, keeping a configuration.
    pub fn empty(configuration: Configuration) -> Self {
        Self {
            id: None,
            status: DeploymentStatus::NotStarted,
            plan_id: None,
            plan_source: None,
            plan_digest: None,
            configuration,
            phases: Vec::new(),
            steps: Vec::new(),
            started_at: None,
            finished_at: None,
            restart: None,
            migrated_from: None,
        }
    }

    pub fn step(&self, id: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// Number of steps in each status.
    pub fn count(&self, status: StepStatus) -> usize {
        self.steps.iter().filter(|s| s.status == status).count()
    }
}

/// Non-secret configuration: what the user chose. Never holds passwords or keys.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Configuration {
    /// Plan flags and their values (`--flag NAME=true|false`).
    #[serde(default)]
    pub flags: BTreeMap<String, bool>,
    /// Plan variables (`--var KEY=VALUE`).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Other wizard answers (target kind, hosts, SSH user, ...).
    #[serde(default)]
    pub answers: BTreeMap<String, serde_json::Value>,
    /// The inventory the deployment runs against (`None`: this machine, `localhost,`):
    /// `resume` and `retry` use exactly this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub inventory: Option<InputFile>,
}

/// A file a deployment was started with: its absolute path and the digest of its
/// content then, to tell whether it changed since.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    pub path: String,
    pub sha256: String,
}

impl Configuration {
    /// Names of the flags that are on, sorted.
    pub fn enabled_flags(&self) -> Vec<String> {
        self.flags
            .iter()
            .filter(|(_, on)| **on)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// A phase: a named group of steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PhaseRecord {
    pub id: String,
    pub title: String,
}

/// One step of the deployment and every attempt at it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    pub id: String,
    pub phase: String,
    pub title: String,
    pub status: StepStatus,
    /// Why a `skipped` step does not apply (e.g. "flag gpu is off").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    /// What the step runs, for people (e.g. "playbook ansible/10_setup.yaml").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// sha256 of the step's definition when it last ran, to notice plan changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition_digest: Option<String>,
    /// Attempts, oldest first.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// Something to know about a completed step: "changed since it ran" (its plan
    /// definition differs from the one that ran) or "no longer enabled: ..."
    /// ([`StepNotice`] writes and reads these).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

impl StepRecord {
    pub fn new(id: &str, phase: &str, title: &str) -> Self {
        Self {
            id: id.to_string(),
            phase: phase.to_string(),
            title: title.to_string(),
            status: StepStatus::Pending,
            skip_reason: None,
            source: None,
            definition_digest: None,
            attempts: Vec::new(),
            notice: None,
        }
    }

    /// The error of the latest attempt, if that attempt failed.
    pub fn last_error(&self) -> Option<&StepError> {
        self.attempts.last().and_then(|a| a.error.as_ref())
    }
}

/// One attempt at a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// The run that made this attempt (`null` for attempts imported from older formats).
    pub run_id: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub outcome: AttemptOutcome,
    /// The process running the step, while `running`: with its start time (clock
    /// ticks since boot, from /proc) so a reused pid is not mistaken for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// The attempt's full output, relative to the environment folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file: Option<String>,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Running,
    Success,
    Failed,
    Interrupted,
}

/// A process on this machine: pid plus start time, which together name it uniquely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessRef {
    pub pid: u32,
    /// Field 22 of /proc/PID/stat; `null` when unknown.
    pub start_ticks: Option<u64>,
}

/// Why a completed step carries a notice. Stored as its text in `StepRecord::notice`
/// (the state format keeps a string); code matches on this, never on the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepNotice {
    /// The plan's flags no longer enable it (with the skip reason).
    NoLongerEnabled(String),
    /// Its definition in the plan changed after it ran.
    ChangedSinceRun,
}

impl StepNotice {
    const NO_LONGER_ENABLED: &'static str = "no longer enabled: ";
    const CHANGED_SINCE_RUN: &'static str = "changed since it ran";

    /// The text stored and shown.
    pub fn text(&self) -> String {
        match self {
            StepNotice::NoLongerEnabled(reason) => format!("{}{reason}", Self::NO_LONGER_ENABLED),
            StepNotice::ChangedSinceRun => Self::CHANGED_SINCE_RUN.to_string(),
        }
    }

    /// The notice a stored text says, if it is one this program writes.
    pub fn parse(text: &str) -> Option<StepNotice> {
        if text == Self::CHANGED_SINCE_RUN {
            Some(StepNotice::ChangedSinceRun)
        } else {
            text.strip_prefix(Self::NO_LONGER_ENABLED)
                .map(|r| StepNotice::NoLongerEnabled(r.to_string()))
        }
    }
}

/// What went wrong in a failed attempt.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepError {
    pub message: String,
    /// The Ansible task that failed, when known.
    pub task: Option<String>,
    pub host: Option<String>,
    pub exit_code: Option<i32>,
    /// The last lines of output before the failure.
    #[serde(default)]
    pub output_tail: Vec<String>,
}

impl StepError {
    pub fn message(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            task: None,
            host: None,
            exit_code: None,
            output_tail: Vec::new(),
        }
    }
}

/// Why the deployment waits for a restart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartRecord {
    /// The step after which the machine must restart.
    pub step: Option<String>,
    /// The boot id (/proc/sys/kernel/random/boot_id) when the restart was asked for;
    /// `null` when unknown (imported from an older format).
    pub boot_id: Option<String>,
    pub requested_at: Option<Timestamp>,
}

/// Where a migrated deployment came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationRecord {
    /// `thinkube-v2`, `thinkube-queue` or `k0rdent-azure`.
    pub format: String,
    pub migrated_at: Timestamp,
    /// When the original was last saved, if it said.
    pub saved_at: Option<Timestamp>,
    /// The original file, when imported with `migrate --from`.
    pub source_path: Option<String>,
    /// What the conversion could not carry over, in sentences.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// One invocation of deploy, resume or retry.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// UTC timestamp plus a random suffix, e.g. `20261122T024031Z-3f9a1c`.
    pub run_id: String,
    pub kind: RunKind,
    pub deployment_id: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub outcome: RunOutcome,
    pub plan_id: Option<String>,
    pub plan_digest: Option<String>,
    /// The configuration as it was when the run started.
    pub configuration: Configuration,
    /// Flags that were on.
    pub enabled_flags: Vec<String>,
    /// Every step attempt this run made, in order.
    #[serde(default)]
    pub steps_attempted: Vec<RunStep>,
    /// The program that ran it, e.g. `thinkube-deploy 0.1.0`.
    pub program: String,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    Deploy,
    Resume,
    Retry,
}

impl RunKind {
    /// The word the contract uses: `deploy`, `resume` or `retry`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Deploy => "deploy",
            RunKind::Resume => "resume",
            RunKind::Retry => "retry",
        }
    }
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Running,
    Success,
    Failed,
    Interrupted,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }
}

/// A step attempt as recorded in a run.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunStep {
    pub step: String,
    pub attempt: u32,
    pub outcome: AttemptOutcome,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
}

/// Cached facts: infrastructure (fetched from a source) and runtime (seen by steps).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Facts {
    #[serde(default)]
    pub infrastructure: Vec<InfraFact>,
    #[serde(default)]
    pub runtime: Vec<RuntimeFact>,
}

/// A fact about infrastructure, as a source said it at `fetched_at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InfraFact {
    /// What the fact is about, e.g. `vm/k0s-controller`.
    pub key: String,
    pub source: FactSource,
    pub value: serde_json::Value,
    pub fetched_at: Timestamp,
    /// After this many seconds the fact is stale.
    pub ttl_seconds: u64,
    /// Checksum of the source, where there is one (e.g. sha256 of terraform.tfstate).
    pub checksum: Option<String>,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FactSource {
    Azure,
    Terraform,
    Inventory,
}

/// A fact a step or gate observed about a host (SSH verified, VPN connected, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeFact {
    pub host: String,
    /// e.g. `ssh_verified`, `cloud_init_complete`, `vpn_connected`.
    pub kind: String,
    pub checked_at: Timestamp,
    /// When it was last seen true; `null` if never.
    pub last_seen_true: Option<Timestamp>,
}

/// One entry of the audit trail (a line of `events.jsonl`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub seq: u64,
    pub at: Timestamp,
    pub run_id: Option<String>,
    pub kind: EventKind,
    pub step: Option<String>,
    pub message: String,
}

/// What an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    DeploymentStarted,
    DeploymentFinished,
    RunStarted,
    RunFinished,
    StepStarted,
    StepCompleted,
    StepFailed,
    StepInterrupted,
    /// Something to know about an attempt besides its outcome (processes it left
    /// running, a log that could not be written).
    StepNote,
    StepsReset,
    AwaitingRestart,
    StateMigrated,
    StateImported,
    StateRecovered,
    StateCleaned,
    RunsArchived,
    TrailRepaired,
    FactsUpdated,
    GateChecked,
    PlanChanged,
    /// Written by a newer program; kept when read, never written by this one.
    #[serde(other)]
    Other,
}

/// An event before it is given its sequence number and time by a commit.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub kind: EventKind,
    pub step: Option<String>,
    pub run_id: Option<String>,
    pub message: String,
}

impl NewEvent {
    pub fn new(kind: EventKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            step: None,
            run_id: None,
            message: message.into(),
        }
    }
    pub fn step(mut self, step: impl Into<String>) -> Self {
        self.step = Some(step.into());
        self
    }
    pub fn run(mut self, run_id: Option<&str>) -> Self {
        self.run_id = run_id.map(str::to_string);
        self
    }
}

impl StateFile {
    /// A fresh state with a new lineage and nothing deployed.
    pub fn new(lineage: Uuid, now: Timestamp) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            lineage,
            serial: 0,
            created_at: now,
            updated_at: now,
            deployment: DeploymentRecord::empty(Configuration::default()),
            current_run: None,
            facts: Facts::default(),
            last_event_seq: 0,
            recent_events: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_notices_read_back_from_their_stored_text() {
        for notice in [
            StepNotice::ChangedSinceRun,
            StepNotice::NoLongerEnabled("gpu not enabled".into()),
        ] {
            assert_eq!(StepNotice::parse(&notice.text()), Some(notice));
        }
        assert_eq!(
            StepNotice::NoLongerEnabled("gpu not enabled".into()).text(),
            "no longer enabled: gpu not enabled"
        );
        assert_eq!(StepNotice::parse("a note from elsewhere"), None);
    }
}
