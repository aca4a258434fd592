//! Older state formats, converted forward on load as a chain: one function per
//! version, each taking the previous version's JSON to the next.
//!
//! | version | format |
//! |---|---|
//! | 1 | the earlier installer's queue format (`phases`, `queue`, `awaitingRestart`) |
//! | 2 | the earlier installer's v2 format (`version: 2`, `allPlaybooks`, `completedIds`, `failedIds`) |
//! | 3 | this program's `schema_version: 3` |
//!
//! Fields a version cannot express are carried to the next step under `x-` keys
//! (e.g. the queue format's `awaitingRestart`, which v2 had no field for), so no
//! information is lost along the chain.
//!
//! `import_k0rdent` reads a k0rdent-azure-setup `deployment-state.yaml` (for
//! `migrate --from`). It never copies WireGuard private keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::state::model::{
    Attempt, AttemptOutcome, Configuration, DeploymentRecord, DeploymentStatus, FactSource, Facts,
    InfraFact, MigrationRecord, PhaseRecord, RuntimeFact, SCHEMA_VERSION, StateFile, StepError,
    StepRecord, StepStatus,
};
use crate::timestamp::Timestamp;

/// What a conversion did.
#[derive(Clone, Debug, PartialEq)]
pub struct Converted {
    /// The version the file was in.
    pub from_version: u32,
    /// `thinkube-queue` or `thinkube-v2`.
    pub format: &'static str,
}

impl Converted {
    pub(crate) fn describe(&self) -> String {
        match self.from_version {
            1 => "the earlier installer's queue format (version 1)".into(),
            2 => "the earlier installer's v2 format".into(),
            v => format!("schema version {v}"),
        }
    }
}

/// Which version a JSON state is in.
pub(crate) fn detect(value: &Value) -> Result<u32, String> {
    let Some(obj) = value.as_object() else {
        return Err(format!(
            "it is JSON but not an object (it is {}); a state file is a JSON object",
            kind_of(value)
        ));
    };
    if let Some(v) = obj.get("schema_version") {
        return v
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v >= 3)
            .ok_or_else(|| {
                format!("schema_version is {v}, which is not a version of this format")
            });
    }
    if obj.get("version").and_then(Value::as_u64) == Some(2) && obj.contains_key("allPlaybooks") {
        return Ok(2);
    }
    if obj.contains_key("queue") && obj.contains_key("phases") {
        return Ok(1);
    }
    Err("it is not a Thinkube installer state (it has no schema_version, and is neither the earlier installer's v2 nor queue format)".into())
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Converts a state of any known version to the current one. Returns the value and,
/// when it was older, what it was converted from.
pub fn upgrade(
    value: Value,
    now: Timestamp,
    lineage: Uuid,
) -> Result<(Value, Option<Converted>), String> {
    let from = detect(&value)?;
    if from >= SCHEMA_VERSION {
        return Ok((value, None));
    }
    let mut value = value;
    for version in from..SCHEMA_VERSION {
        value = match version {
            1 => v1_to_v2(value)?,
            2 => v2_to_v3(value, now, lineage)?,
            _ => unreachable!("the chain covers every version below SCHEMA_VERSION"),
        };
    }
    let format = if from == 1 {
        "thinkube-queue"
    } else {
        "thinkube-v2"
    };
    Ok((
        value,
        Some(Converted {
            from_version: from,
            format,
        }),
    ))
}

// ---- version 1: the queue format ------------------------------------------------

#[derive(Debug, Deserialize, Serialize, Clone)]
struct QueuePhase {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueueState {
    phases: Vec<QueuePhase>,
    queue: Vec<V2Playbook>,
    #[serde(default)]
    current_phase: Option<String>,
    #[serde(default)]
    awaiting_restart: Option<bool>,
    #[serde(default)]
    timestamp: Option<String>,
}

/// Queue format -> v2: queued items become pending playbooks; the phases (with
/// their titles and statuses) and `awaitingRestart` ride along as `x-` keys.
pub fn v1_to_v2(value: Value) -> Result<Value, String> {
    let q: QueueState = serde_json::from_value(value)
        .map_err(|e| format!("it looks like the earlier installer's queue format but {e}"))?;
    let playbooks: Vec<V2Playbook> = q
        .queue
        .into_iter()
        .map(|mut p| {
            p.status = Some("pending".into());
            p
        })
        .collect();
    let v2 = V2State {
        version: 2,
        timestamp: q.timestamp,
        all_playbooks: playbooks,
        current_index: Some(0),
        completed_ids: Vec::new(),
        failed_ids: Vec::new(),
        x_phases: Some(q.phases),
        x_awaiting_restart: q.awaiting_restart,
        x_current_phase: q.current_phase,
    };
    serde_json::to_value(v2).map_err(|e| e.to_string())
}

// ---- version 2 ------------------------------------------------------------------

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct V2Playbook {
    id: String,
    #[serde(default)]
    phase: Option<String>,
    #[serde(default)]
    title: Option<String>,
    /// The playbook path.
    #[serde(default)]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    extra_vars: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct V2State {
    version: u32,
    #[serde(default)]
    timestamp: Option<String>,
    all_playbooks: Vec<V2Playbook>,
    #[serde(default)]
    current_index: Option<i64>,
    #[serde(default)]
    completed_ids: Vec<String>,
    #[serde(default)]
    failed_ids: Vec<String>,
    #[serde(rename = "x-phases", default, skip_serializing_if = "Option::is_none")]
    x_phases: Option<Vec<QueuePhase>>,
    #[serde(
        rename = "x-awaitingRestart",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    x_awaiting_restart: Option<bool>,
    #[serde(
        rename = "x-currentPhase",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    x_current_phase: Option<String>,
}

/// The titles the earlier thinkube installer gave its phases (its queue format's
/// names; the built-in thinkube plan has the same, which a test of the plan checks).
pub const THINKUBE_PHASES: &[(&str, &str)] = &[
    ("initial", "Initial Setup"),
    ("network", "Network Configuration"),
    ("kubernetes", "Kubernetes"),
    ("rollback", "Rollback"),
];

/// A phase's title as the earlier thinkube installer gave it, else its id.
fn thinkube_phase_title(id: &str) -> String {
    THINKUBE_PHASES
        .iter()
        .find(|(p, _)| *p == id)
        .map_or(id, |(_, t)| t)
        .to_string()
}

/// v2 -> v3: playbooks become steps with their statuses and errors. A playbook in
/// `failedIds` (or with status `failed`) is failed, and then so is the deployment:
/// the earlier installer showed "complete" here; we never do.
pub(crate) fn v2_to_v3(value: Value, now: Timestamp, lineage: Uuid) -> Result<Value, String> {
    let v2: V2State = serde_json::from_value(value)
        .map_err(|e| format!("it looks like the earlier installer's v2 format but {e}"))?;
    let saved_at = v2
        .timestamp
        .as_deref()
        .and_then(|t| Timestamp::parse(t).ok());
    let mut notes = Vec::new();
    let mut phases = queue_phases(&v2, &mut notes);
    let mut steps = Vec::new();
    let mut legacy_vars = serde_json::Map::new();
    for pb in &v2.all_playbooks {
        let phase = pb.phase.clone().unwrap_or_else(|| "default".into());
        if !phases.iter().any(|p| p.id == phase) {
            phases.push(PhaseRecord {
                id: phase.clone(),
                title: thinkube_phase_title(&phase),
            });
        }
        let step = v2_step(&v2, pb, &phase);
        if let Some(vars) = &pb.extra_vars {
            let (kept, dropped) = split_secrets(vars);
            if !dropped.is_empty() {
                notes.push(format!(
                    "step `{}`: extra variables {} look secret and were not copied",
                    pb.id,
                    dropped.join(", ")
                ));
            }
            if !kept.is_empty() {
                legacy_vars.insert(pb.id.clone(), Value::Object(kept));
            }
        }
        steps.push(step);
    }
    for id in v2.completed_ids.iter().chain(&v2.failed_ids) {
        if !v2.all_playbooks.iter().any(|p| &p.id == id) {
            notes.push(format!(
                "`{id}` is listed as completed or failed but is not among the playbooks; ignored"
            ));
        }
    }
    let mut configuration = Configuration::default();
    if !legacy_vars.is_empty() {
        configuration
            .answers
            .insert("legacy_extra_vars".into(), Value::Object(legacy_vars));
    }
    let awaiting = v2.x_awaiting_restart == Some(true);
    let mut deployment = DeploymentRecord {
        id: Some(format!("migrated-{}", saved_at.unwrap_or(now).compact())),
        status: derive_status(&steps, awaiting),
        plan_id: Some("thinkube".into()),
        plan_source: Some("thinkube".into()),
        plan_digest: None,
        configuration,
        phases,
        steps,
        started_at: None,
        finished_at: None,
        restart: None,
        migrated_from: None,
    };
    if deployment.status == DeploymentStatus::AwaitingRestart {
        deployment.restart = Some(crate::state::model::RestartRecord {
            step: None,
            boot_id: None,
            requested_at: saved_at,
        });
        notes.push("the earlier installer was waiting for a restart; its boot id was not recorded, so the next deploy takes the restart as done".into());
    } else if awaiting {
        notes.push("the earlier installer was waiting for a restart, but a step has failed: retry it first".into());
    }
    deployment.migrated_from = Some(MigrationRecord {
        format: if v2.x_phases.is_some() {
            "thinkube-queue"
        } else {
            "thinkube-v2"
        }
        .into(),
        migrated_at: now,
        saved_at,
        source_path: None,
        notes,
    });
    let mut state = StateFile::new(lineage, saved_at.unwrap_or(now));
    state.updated_at = now;
    state.deployment = deployment;
    serde_json::to_value(state).map_err(|e| e.to_string())
}

/// The phases of the queue format (`x_phases`), noting each completed one whose
/// playbooks the format does not list.
fn queue_phases(v2: &V2State, notes: &mut Vec<String>) -> Vec<PhaseRecord> {
    let mut phases: Vec<PhaseRecord> = Vec::new();
    if let Some(queue_phases) = &v2.x_phases {
        for p in queue_phases {
            let has_steps = v2
                .all_playbooks
                .iter()
                .any(|pb| pb.phase.as_deref() == Some(&p.id));
            if !has_steps && p.status.as_deref() == Some("completed") {
                notes.push(format!(
                    "phase `{}` ({}) was completed by the earlier installer; the queue format does not list its playbooks",
                    p.id,
                    p.name.as_deref().unwrap_or(&p.id)
                ));
            }
            phases.push(PhaseRecord {
                id: p.id.clone(),
                title: p.name.clone().unwrap_or_else(|| p.id.clone()),
            });
        }
    }
    phases
}

/// The step recorded for one playbook of the v2 format: its status from the
/// completed and failed lists (failed wins) or its own, and an attempt for what ran.
fn v2_step(v2: &V2State, pb: &V2Playbook, phase: &str) -> StepRecord {
    let mut step = StepRecord::new(&pb.id, phase, pb.title.as_deref().unwrap_or(&pb.id));
    step.source = pb.name.as_ref().map(|n| format!("playbook {n}"));
    let failed = v2.failed_ids.contains(&pb.id) || pb.status.as_deref() == Some("failed");
    let completed =
        !failed && (v2.completed_ids.contains(&pb.id) || pb.status.as_deref() == Some("completed"));
    let (status, outcome) = if failed {
        (StepStatus::Failed, Some(AttemptOutcome::Failed))
    } else if completed {
        (StepStatus::Completed, Some(AttemptOutcome::Success))
    } else {
        match pb.status.as_deref() {
            Some("running") | Some("in_progress") => {
                (StepStatus::Interrupted, Some(AttemptOutcome::Interrupted))
            }
            Some("skipped") => (StepStatus::Skipped, None),
            _ => (StepStatus::Pending, None),
        }
    };
    step.status = status;
    if status == StepStatus::Skipped {
        step.skip_reason = Some("skipped by the earlier installer".into());
    }
    if let Some(outcome) = outcome {
        let error = (outcome == AttemptOutcome::Failed).then(|| {
            let message = pb
                .error
                .clone()
                .unwrap_or_else(|| "failed (the earlier installer recorded no message)".into());
            StepError {
                exit_code: exit_code_in(&message),
                message,
                task: None,
                host: None,
                output_tail: Vec::new(),
            }
        });
        step.attempts.push(Attempt {
            number: 1,
            run_id: None,
            started_at: None,
            finished_at: None,
            outcome,
            process: None,
            error,
            log_file: None,
        });
    }
    step
}

/// A deployment's status from its steps: a failed step means failed, never completed.
fn derive_status(steps: &[StepRecord], awaiting_restart: bool) -> DeploymentStatus {
    let any = |st: StepStatus| steps.iter().any(|s| s.status == st);
    if any(StepStatus::Failed) {
        DeploymentStatus::Failed
    } else if awaiting_restart {
        DeploymentStatus::AwaitingRestart
    } else if !steps.is_empty()
        && steps
            .iter()
            .all(|s| matches!(s.status, StepStatus::Completed | StepStatus::Skipped))
    {
        DeploymentStatus::Completed
    } else if steps.iter().any(|s| !s.attempts.is_empty()) {
        DeploymentStatus::Interrupted
    } else {
        DeploymentStatus::NotStarted
    }
}

/// "Playbook exited with code 2" -> 2.
fn exit_code_in(message: &str) -> Option<i32> {
    let rest = &message[message.find("code ")? + 5..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn split_secrets(vars: &BTreeMap<String, Value>) -> (serde_json::Map<String, Value>, Vec<String>) {
    let mut kept = serde_json::Map::new();
    let mut dropped = Vec::new();
    for (k, v) in vars {
        if crate::secrets::is_secret_key(k) {
            dropped.push(k.clone());
        } else {
            kept.insert(k.clone(), v.clone());
        }
    }
    (kept, dropped)
}

// ---- k0rdent-azure-setup ---------------------------------------------------------

/// The k0rdent-azure plan's steps: (step id, phase id, title). The same ids as the
/// built-in `k0rdent-azure` plan, so an imported deployment continues with it.
pub(crate) const K0RDENT_STEPS: &[(&str, &str, &str)] = &[
    // The plan's own first step: deploy-k0rdent.sh checks before every deployment,
    // and records no phase for it (an imported deployment has it pending).
    ("check_prerequisites", "azure", "Check prerequisites"),
    ("prepare_deployment", "azure", "Prepare deployment"),
    ("setup_network", "azure", "Set up Azure network"),
    ("create_vms", "azure", "Create VMs"),
    ("setup_vpn", "vpn", "Set up WireGuard VPN"),
    ("connect_vpn", "vpn", "Connect VPN"),
    ("install_k0s", "kubernetes", "Install k0s"),
    ("install_k0rdent", "kubernetes", "Install k0rdent"),
    (
        "setup_azure_children",
        "azure_children",
        "Set up Azure child clusters",
    ),
    // KOF's prerequisite (deploy-k0rdent.sh runs it when KOF is enabled).
    ("install_azure_csi", "kof", "Install Azure CSI driver"),
    ("install_kof_mothership", "kof", "Install KOF mothership"),
    ("install_kof_regional", "kof", "Install KOF regional"),
];

/// Phase titles of the k0rdent-azure plan.
pub(crate) const K0RDENT_PHASES: &[(&str, &str)] = &[
    ("azure", "Azure infrastructure"),
    ("vpn", "WireGuard VPN"),
    ("kubernetes", "k0s and k0rdent"),
    ("azure_children", "Azure child clusters"),
    ("kof", "KOF observability"),
];

/// A mapping whose keys keep their order from the file (YAML mappings are ordered).
#[derive(Debug)]
struct Ordered<V>(Vec<(String, V)>);

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visit<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

#[derive(Debug, Deserialize)]
struct K0rdentPhase {
    status: String,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    skipped_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct K0rdentVm {
    #[serde(default)]
    public_ip: Option<String>,
    #[serde(default)]
    private_ip: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    last_checked: Option<String>,
}

#[derive(Debug, Deserialize)]
struct K0rdentState {
    deployment_id: String,
    #[serde(default)]
    deployer: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    last_updated: Option<String>,
    #[serde(default)]
    source_config_file: Option<String>,
    #[serde(default)]
    deployment_flags: BTreeMap<String, bool>,
    #[serde(default)]
    config: BTreeMap<String, Value>,
    #[serde(default)]
    vm_states: Ordered<K0rdentVm>,
    #[serde(default)]
    wg_vpn_connected: Option<bool>,
    #[serde(default)]
    wireguard_peers: BTreeMap<String, BTreeMap<String, Value>>,
    #[serde(default)]
    artifacts: Option<Value>,
    /// Since k0rdent-azure-setup 7122b56 (2025-11-07): each phase with its status.
    #[serde(default)]
    phases: Option<Ordered<K0rdentPhase>>,
    /// Before it: the phase reached (`phase:`), the deployment's `status`, and
    /// booleans and statuses that each script set when its work was done.
    #[serde(flatten)]
    legacy: BTreeMap<String, Value>,
}

/// The phases of a state written before 7122b56 (no `phases` key), read from what
/// `etc/state-management.sh` and the scripts recorded then: `phase:` (the last
/// phase reached, `..._deployment` while one ran), `status`, and each script's own
/// marks (`azure_network_status: created`, `wg_keys_generated: true`, ...). A step is
/// completed only where a mark or a later phase says so; the phase that was running
/// is interrupted (failed when the deployment's status is `failed`); the rest pending.
fn legacy_k0rdent_phases(k: &K0rdentState) -> Ordered<K0rdentPhase> {
    let legacy = &k.legacy;
    let mark = |key: &str| match legacy.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "created",
        _ => false,
    };
    let phase = legacy.get("phase").and_then(Value::as_str).unwrap_or("");
    // How many of the first three steps (prepare, network, VMs) the phase reached
    // proves done: `preparation` is set when preparing starts, `azure_ready` when the
    // network is up, `vms_ready` when the VMs are, and every later phase comes after.
    let proven = match phase {
        "azure_ready" => 2,
        "vms_ready"
        | "k0s_config_generation"
        | "k0s_deployment"
        | "k0s_deployed"
        | "k0rdent_installation"
        | "k0rdent_deployed"
        | "kof_mothership_deployment"
        | "kof_regional_deployment" => 3,
        _ => 0,
    };
    let running = match phase {
        "k0s_config_generation" | "k0s_deployment" => Some("install_k0s"),
        "k0rdent_installation" => Some("install_k0rdent"),
        "kof_mothership_deployment" => Some("install_kof_mothership"),
        "kof_regional_deployment" => Some("install_kof_regional"),
        _ => None,
    };
    let failed = legacy.get("status").and_then(Value::as_str) == Some("failed");
    let steps: [(&str, bool); 11] = [
        ("prepare_deployment", mark("wg_keys_generated")),
        ("setup_network", mark("azure_network_status")),
        ("create_vms", false),
        ("setup_vpn", mark("wg_laptop_config_created")),
        ("connect_vpn", k.wg_vpn_connected == Some(true)),
        ("install_k0s", mark("k0s_cluster_deployed")),
        ("install_k0rdent", mark("k0rdent_installed")),
        ("setup_azure_children", false),
        ("install_azure_csi", mark("azure_csi_installed")),
        ("install_kof_mothership", mark("kof_mothership_installed")),
        ("install_kof_regional", mark("kof_regional_installed")),
    ];
    Ordered(
        steps
            .iter()
            .enumerate()
            .map(|(i, (name, marked))| {
                // The VMs have no mark of their own: the phase reached proves them.
                let by_phase = i < proven;
                // A step of a flag that was off did not run, as the newer files say.
                let flag = match *name {
                    "setup_azure_children" => Some("azure_children"),
                    "install_azure_csi" | "install_kof_mothership" | "install_kof_regional" => {
                        Some("kof")
                    }
                    _ => None,
                };
                let off = flag.is_some_and(|f| k.deployment_flags.get(f) != Some(&true));
                let status = if *marked || by_phase {
                    "completed"
                } else if running == Some(*name) {
                    if failed { "failed" } else { "in_progress" }
                } else if off {
                    "skipped"
                } else {
                    "pending"
                };
                (
                    name.to_string(),
                    K0rdentPhase {
                        status: status.into(),
                        updated_at: None,
                        skipped_reason: (status == "skipped").then(|| {
                            format!("`{}` was off in the deployment's flags", flag.unwrap_or(""))
                        }),
                    },
                )
            })
            .collect(),
    )
}

/// A k0rdent deployment converted: the deployment, facts, and what was not copied.
#[derive(Debug)]
pub struct K0rdentImport {
    pub deployment: DeploymentRecord,
    pub facts: Facts,
    /// Peers whose WireGuard private keys stayed in the original file.
    pub peers_with_private_keys: Vec<String>,
}

/// Time-to-live of imported VM facts: they are stale after five minutes.
pub(crate) const VM_FACT_TTL_SECONDS: u64 = 300;

/// Reads a k0rdent-azure-setup `deployment-state.yaml`.
pub fn import_k0rdent(
    yaml: &str,
    source_path: &str,
    now: Timestamp,
) -> Result<K0rdentImport, String> {
    let k: K0rdentState = crate::yaml::from_str(yaml)
        .map_err(|e| format!("it is not a k0rdent-azure-setup deployment state: {e}"))?;
    let mut notes = Vec::new();
    let mut phases: Vec<PhaseRecord> = Vec::new();
    let mut steps = Vec::new();
    let recorded = match &k.phases {
        Some(p) => p,
        None => {
            if !k.legacy.contains_key("phase") {
                return Err("it is not a k0rdent-azure-setup deployment state: it has neither `phases` nor `phase`".into());
            }
            notes.push(format!(
                "a state written before k0rdent-azure-setup 7122b56 (no `phases`): progress read from `phase: {}` and the scripts' marks",
                k.legacy.get("phase").and_then(Value::as_str).unwrap_or("?")
            ));
            &legacy_k0rdent_phases(&k)
        }
    };
    for (name, phase) in &recorded.0 {
        let (phase_id, title) = K0RDENT_STEPS
            .iter()
            .find(|(id, _, _)| id == name)
            .map(|(_, p, t)| (*p, *t))
            .unwrap_or(("other", name.as_str()));
        if !phases.iter().any(|p| p.id == phase_id) {
            let phase_title = K0RDENT_PHASES
                .iter()
                .find(|(id, _)| *id == phase_id)
                .map_or("Other", |(_, t)| t);
            phases.push(PhaseRecord {
                id: phase_id.into(),
                title: phase_title.into(),
            });
        }
        steps.push(k0rdent_step(name, phase_id, title, phase, &mut notes));
    }
    let configuration = k0rdent_configuration(&k, &mut notes);
    let last_updated = k0rdent_time(&k.last_updated);
    let facts = k0rdent_facts(&k, last_updated, now);
    let peers_with_private_keys: Vec<String> = k
        .wireguard_peers
        .iter()
        .filter(|(_, peer)| peer.keys().any(|key| crate::secrets::is_secret_key(key)))
        .map(|(name, _)| name.clone())
        .collect();
    if !peers_with_private_keys.is_empty() {
        notes.push(format!(
            "WireGuard private keys of {} were not copied; they stay in {source_path}",
            peers_with_private_keys.join(", ")
        ));
    }
    let status = derive_status(&steps, false);
    let deployment = DeploymentRecord {
        id: Some(k.deployment_id.clone()),
        status,
        plan_id: Some("k0rdent-azure".into()),
        plan_source: Some("k0rdent-azure".into()),
        plan_digest: None,
        configuration,
        phases,
        steps,
        started_at: k0rdent_time(&k.created_at),
        finished_at: if status == DeploymentStatus::Completed {
            last_updated
        } else {
            None
        },
        restart: None,
        migrated_from: Some(MigrationRecord {
            format: "k0rdent-azure".into(),
            migrated_at: now,
            saved_at: last_updated,
            source_path: Some(source_path.to_string()),
            notes,
        }),
    };
    Ok(K0rdentImport {
        deployment,
        facts,
        peers_with_private_keys,
    })
}

/// The step recorded for one k0rdent-azure-setup phase (`name`), with its status and
/// an attempt for what ran; a status it does not know is taken as pending (noted).
fn k0rdent_step(
    name: &str,
    phase_id: &str,
    title: &str,
    phase: &K0rdentPhase,
    notes: &mut Vec<String>,
) -> StepRecord {
    let mut step = StepRecord::new(name, phase_id, title);
    step.source = Some(format!("k0rdent-azure-setup phase {name}"));
    let updated = k0rdent_time(&phase.updated_at);
    let (status, outcome) = match phase.status.as_str() {
        "completed" => (StepStatus::Completed, Some(AttemptOutcome::Success)),
        "in_progress" => (StepStatus::Interrupted, Some(AttemptOutcome::Interrupted)),
        "failed" => (StepStatus::Failed, Some(AttemptOutcome::Failed)),
        "skipped" => (StepStatus::Skipped, None),
        "pending" => (StepStatus::Pending, None),
        other => {
            notes.push(format!(
                "phase `{name}` had status `{other}`, taken as pending"
            ));
            (StepStatus::Pending, None)
        }
    };
    step.status = status;
    if status == StepStatus::Skipped {
        step.skip_reason = Some(
            phase
                .skipped_reason
                .clone()
                .unwrap_or_else(|| "skipped by k0rdent-azure-setup".into()),
        );
    }
    if let Some(outcome) = outcome {
        let finished = outcome != AttemptOutcome::Interrupted;
        step.attempts.push(Attempt {
            number: 1,
            run_id: None,
            started_at: if finished { None } else { updated },
            finished_at: if finished { updated } else { None },
            outcome,
            process: None,
            error: (outcome == AttemptOutcome::Failed)
                .then(|| StepError::message("failed in k0rdent-azure-setup (no message recorded)")),
            log_file: None,
        });
    }
    step
}

/// The configuration k0rdent-azure-setup recorded, but what looks secret (noted).
fn k0rdent_configuration(k: &K0rdentState, notes: &mut Vec<String>) -> Configuration {
    let mut configuration = Configuration {
        flags: k.deployment_flags.clone(),
        ..Configuration::default()
    };
    for (key, value) in &k.config {
        if crate::secrets::is_secret_key(key) {
            notes.push(format!(
                "configuration `{key}` looks secret and was not copied"
            ));
        } else {
            configuration.answers.insert(key.clone(), value.clone());
        }
    }
    if let Some(deployer) = &k.deployer {
        configuration
            .answers
            .insert("deployer".into(), Value::String(deployer.clone()));
    }
    if let Some(source) = &k.source_config_file {
        configuration
            .answers
            .insert("source_config_file".into(), Value::String(source.clone()));
    }
    if let Some(artifacts) = &k.artifacts {
        configuration
            .answers
            .insert("k0rdent_artifacts".into(), artifacts.clone());
    }
    configuration
}

/// What k0rdent-azure-setup knew of the infrastructure: its VMs (provisioning state
/// and addresses) and whether its VPN was connected.
fn k0rdent_facts(k: &K0rdentState, last_updated: Option<Timestamp>, now: Timestamp) -> Facts {
    let mut facts = Facts::default();
    for (name, vm) in &k.vm_states.0 {
        facts.infrastructure.push(InfraFact {
            key: crate::state::fact_keys::FactKey::Vm(name.clone()).text(),
            source: FactSource::Azure,
            // k0rdent-azure-setup records ARM's provisioning state, not the power
            // state: a vm_running gate asks Azure rather than trust it.
            value: crate::state::fact_keys::to_value(&crate::state::fact_keys::VmFact {
                power_state: None,
                provisioning_state: vm.state.as_deref().map(str::to_ascii_lowercase),
                private_ips: vm.private_ip.iter().cloned().collect(),
                public_ips: vm.public_ip.iter().cloned().collect(),
                fqdns: Vec::new(),
            }),
            fetched_at: k0rdent_time(&vm.last_checked)
                .or(last_updated)
                .unwrap_or(now),
            ttl_seconds: VM_FACT_TTL_SECONDS,
            checksum: None,
        });
    }
    if let Some(connected) = k.wg_vpn_connected {
        let at = last_updated.unwrap_or(now);
        facts.runtime.push(RuntimeFact {
            host: "localhost".into(),
            kind: "vpn_connected".into(),
            checked_at: at,
            last_seen_true: connected.then_some(at),
        });
    }
    facts
}

/// A time k0rdent-azure-setup wrote, when it is one.
fn k0rdent_time(t: &Option<String>) -> Option<Timestamp> {
    t.as_deref().and_then(|t| Timestamp::parse(t).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_version() {
        let cases = [
            (r#"{"schema_version": 3}"#, Ok(3)),
            (r#"{"schema_version": 9}"#, Ok(9)),
            (r#"{"version": 2, "allPlaybooks": []}"#, Ok(2)),
            (r#"{"phases": [], "queue": []}"#, Ok(1)),
        ];
        for (json, want) in cases {
            assert_eq!(detect(&serde_json::from_str(json).unwrap()), want, "{json}");
        }
        for bad in [
            r#"[1]"#,
            r#"{"schema_version": "3"}"#,
            r#"{"hello": 1}"#,
            r#"{"schema_version": 1}"#,
        ] {
            assert!(
                detect(&serde_json::from_str(bad).unwrap()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn exit_codes_are_read_from_legacy_messages() {
        assert_eq!(exit_code_in("Playbook exited with code 2"), Some(2));
        assert_eq!(exit_code_in("no code here"), None);
        assert_eq!(exit_code_in("exit code x"), None);
    }

    #[test]
    fn a_v2_state_that_says_complete_with_a_failure_is_failed() {
        let v2 = serde_json::json!({
            "version": 2, "allPlaybooks": [
                {"id": "a", "phase": "p", "status": "completed"},
                {"id": "b", "phase": "p", "status": "completed"}],
            "completedIds": ["a", "b"], "failedIds": ["b"], "currentIndex": 2
        });
        let v3 = v2_to_v3(v2, Timestamp::now(), Uuid::nil()).unwrap();
        let state: StateFile = serde_json::from_value(v3).unwrap();
        assert_eq!(state.deployment.status, DeploymentStatus::Failed);
        assert_eq!(state.deployment.steps[1].status, StepStatus::Failed);
    }
}
