//! `validate`: compares what the state says with reality, now. Each mismatch names
//! what differs, the step it affects and what to do; `--reset-affected` marks the
//! earliest affected step and every later one pending (one `steps_reset` event).
//!
//! Reality here is what can be asked without credentials: the Terraform state file the
//! facts were read from (changed or gone?), and each inventory host's SSH port.

use std::time::Duration;

use serde::Serialize;

use crate::config::{InstallerConfig, TargetKind};
use crate::error::{EngineError, Result};
use crate::facts;
use crate::plan::builtin::PlanRef;
use crate::plan::{Gate, Plan};
use crate::state::lifecycle::AnyDeployment;
use crate::state::lock::LockWait;
use crate::state::model::{EventKind, NewEvent, StateFile, StepStatus};
use crate::state::store::Store;
use crate::timestamp::Timestamp;

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    TerraformChanged,
    TerraformGone,
    HostUnreachable,
    VmGone,
    VmNotRunning,
    /// Reality could not be asked (e.g. Azure refused the credentials).
    SourceUnavailable,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub kind: MismatchKind,
    /// What it is about: a file, a host.
    pub subject: String,
    pub detail: String,
    /// The earliest completed step that relied on it (`null`: nothing ran yet).
    pub affects_step: Option<String>,
    pub what_to_do: String,
}

/// What a check asked, and what it found.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Validation {
    /// What was compared with reality, in words ("the SSH port of node1
    /// (10.0.0.4:22)"); empty when there was nothing to check (a local target with
    /// no Terraform state read).
    pub checked: Vec<String>,
    pub mismatches: Vec<Mismatch>,
}

/// Every mismatch between the state and reality, and what was checked.
pub fn check(
    state: &StateFile,
    config: Option<&InstallerConfig>,
    plan: Option<&Plan>,
    probe_timeout: Duration,
    now: Timestamp,
) -> Validation {
    let mut out = Vec::new();
    let mut checked = Vec::new();
    let earliest = first_completed(state, |_| true);
    for (path, now_sum) in facts::current_checksums(state) {
        checked.push(format!("the Terraform state {path}"));
        let recorded = state
            .facts
            .infrastructure
            .iter()
            .find(|f| f.value.get("source_file").and_then(|v| v.as_str()) == Some(path.as_str()))
            .and_then(|f| f.checksum.clone());
        let (kind, detail) = match now_sum {
            None => (
                MismatchKind::TerraformGone,
                format!("{path} no longer exists"),
            ),
            Some(sum) if Some(&sum) != recorded.as_ref() => (
                MismatchKind::TerraformChanged,
                format!("{path} changed since its outputs were read"),
            ),
            Some(_) => continue,
        };
        out.push(Mismatch {
            kind,
            subject: path.clone(),
            detail,
            affects_step: earliest.clone(),
            what_to_do: "check what changed in the infrastructure (`terraform plan`), then `thinkube-deploy facts --refresh`; if resources were replaced, `validate --reset-affected` and resume".into(),
        });
    }
    if let Some(c) = config.filter(|c| c.target == TargetKind::Azure && c.azure.is_some()) {
        let (vms, found) = vm_mismatches(state, c, plan, earliest.as_deref(), now);
        checked.extend(vms);
        out.extend(found);
    }
    if let Some(c) = config.filter(|c| c.target != TargetKind::Local) {
        for h in &c.hosts {
            checked.push(format!(
                "the SSH port of {} ({}:{})",
                h.name,
                h.address.trim(),
                h.ssh_port()
            ));
            let Err(error) = facts::probe(h.address.trim(), h.ssh_port(), probe_timeout) else {
                continue;
            };
            let affected = plan
                .and_then(|p| phase_gated_on(p, &h.name, h.address.trim()))
                .and_then(|phase| first_completed(state, |s| s == phase.as_str()))
                .or_else(|| earliest.clone());
            if affected.is_none() {
                // Nothing has run that relies on it yet.
                continue;
            }
            out.push(Mismatch {
                kind: MismatchKind::HostUnreachable,
                subject: h.name.clone(),
                detail: format!(
                    "{} ({}:{}) does not answer on its SSH port: {error}",
                    h.name,
                    h.address.trim(),
                    h.ssh_port()
                ),
                affects_step: affected,
                what_to_do: "start the host or fix the network (VPN?); if it was rebuilt, `validate --reset-affected` and resume".into(),
            });
        }
    }
    Validation {
        checked,
        mismatches: out,
    }
}

/// VMs the state saw running that are now gone or not running (asks Azure once):
/// what was checked, and what differs.
fn vm_mismatches(
    state: &StateFile,
    config: &InstallerConfig,
    plan: Option<&Plan>,
    earliest: Option<&str>,
    at: Timestamp,
) -> (Vec<String>, Vec<Mismatch>) {
    let cached: Vec<String> = crate::state::fact_keys::vms(&state.facts.infrastructure)
        .filter(|(_, vm)| vm.is_running())
        .map(|(name, _)| name)
        .collect();
    if cached.is_empty() || earliest.is_none() {
        return (Vec::new(), Vec::new());
    }
    let checked = cached.iter().map(|n| format!("the Azure VM {n}")).collect();
    let now = match facts::gather_vms(config, at) {
        Ok(r) => r.facts,
        Err(e) => {
            return (
                checked,
                vec![Mismatch {
                    kind: MismatchKind::SourceUnavailable,
                    subject: "azure".into(),
                    detail: format!("the VMs could not be checked: {e}"),
                    affects_step: None,
                    what_to_do: "fix the Azure sign-in, then validate again".into(),
                }],
            );
        }
    };
    (checked, compare_vms(state, &cached, &now, plan, earliest))
}

/// The VMs seen running (`cached`) against a fresh refresh's `vm/NAME` facts.
fn compare_vms(
    state: &StateFile,
    cached: &[String],
    now: &[crate::state::model::InfraFact],
    plan: Option<&Plan>,
    earliest: Option<&str>,
) -> Vec<Mismatch> {
    let mut out = Vec::new();
    for name in cached {
        let seen = crate::state::fact_keys::vm(now, name);
        let (kind, detail) = match seen
            .as_ref()
            .map(|v| (v.is_running(), v.power_state.as_deref()))
        {
            Some((true, _)) => continue,
            None => (MismatchKind::VmGone, format!("VM {name} no longer exists")),
            Some((false, power)) => (
                MismatchKind::VmNotRunning,
                format!(
                    "VM {name} is {}, not running",
                    power.unwrap_or("in an unknown power state")
                ),
            ),
        };
        let affected = plan
            .and_then(|p| phase_gated_on(p, name, name))
            .and_then(|phase| first_completed(state, |s| s == phase.as_str()))
            .or_else(|| earliest.map(String::from));
        out.push(Mismatch {
            kind,
            subject: name.clone(),
            detail,
            affects_step: affected,
            what_to_do: "start the VM (or recreate it), `thinkube-deploy facts --refresh`; if it was recreated, `validate --reset-affected` and resume".into(),
        });
    }
    out
}

/// The id of the first phase whose gates wait for this host.
fn phase_gated_on(plan: &Plan, name: &str, address: &str) -> Option<String> {
    plan.phases
        .iter()
        .find(|p| {
            p.gates.iter().any(|g| match g {
                Gate::Tcp { host, .. } => host == name || host == address,
                Gate::VmRunning { vms } => vms.iter().any(|v| v == name),
                _ => false,
            })
        })
        .map(|p| p.id.clone())
}

fn first_completed(state: &StateFile, phase: impl Fn(&str) -> bool) -> Option<String> {
    state
        .deployment
        .steps
        .iter()
        .find(|s| s.status == StepStatus::Completed && phase(&s.phase))
        .map(|s| s.id.clone())
}

/// `validate`: reality now against the environment's recorded state, configuration
/// and plan. `None` when there is no state yet.
pub fn check_environment(
    store: &Store,
    probe_timeout: Duration,
    now: Timestamp,
) -> Result<Option<Validation>> {
    let Some(loaded) = store.load(now)? else {
        return Ok(None);
    };
    let config = crate::config::load(store.layout())?;
    let plan = deployment_plan(store, &loaded.state);
    Ok(Some(check(
        &loaded.state,
        config.as_ref(),
        plan.as_ref(),
        probe_timeout,
        now,
    )))
}

/// The deployment's plan, when it can be loaded (for mapping hosts to phases).
pub(crate) fn deployment_plan(store: &Store, state: &StateFile) -> Option<Plan> {
    let d = &state.deployment;
    let spec = d.plan_source.clone().or(d.plan_id.clone())?;
    PlanRef::parse(Some(&spec))
        .ok()?
        .load(&store.layout().root.join("plans"))
        .ok()
}

/// Marks the earliest affected step (in plan order) and every later one pending.
/// Returns the steps reset.
pub(crate) fn reset_affected(
    store: &Store,
    mismatches: &[Mismatch],
    wait: LockWait,
    now: Timestamp,
) -> Result<Vec<String>> {
    let mut w = store.open_writer("validate", wait, now)?;
    let order: Vec<String> = w
        .state()
        .deployment
        .steps
        .iter()
        .map(|s| s.id.clone())
        .collect();
    let Some(earliest) = order
        .iter()
        .find(|id| {
            mismatches
                .iter()
                .any(|m| m.affects_step.as_deref() == Some(id.as_str()))
        })
        .cloned()
    else {
        w.finish()?;
        return Ok(Vec::new());
    };
    let why: Vec<String> = mismatches.iter().map(|m| m.detail.clone()).collect();
    let d = AnyDeployment::from_record(w.state().deployment.clone())
        .map_err(|e| EngineError::Usage(e.to_string()))?;
    let (d, reset) = d
        .reset_from(&earliest)
        .map_err(|(_, e)| EngineError::Transition(e))?;
    let record = d.into_record();
    let event = NewEvent::new(
        EventKind::StepsReset,
        format!(
            "validate: to run again: {} (because {})",
            reset.join(", "),
            why.join("; ")
        ),
    );
    w.commit(now, vec![event], |s| {
        s.deployment = record;
        Ok(())
    })?;
    w.finish()?;
    Ok(reset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::model::{FactSource, InfraFact, StepRecord};

    fn vm(name: &str, power: &str) -> InfraFact {
        InfraFact {
            key: crate::state::fact_keys::FactKey::Vm(name.to_string()).text(),
            source: FactSource::Azure,
            value: crate::state::fact_keys::to_value(&crate::state::fact_keys::VmFact {
                power_state: Some(power.to_string()),
                ..Default::default()
            }),
            fetched_at: Timestamp::parse("2026-11-22T10:00:00Z").unwrap(),
            ttl_seconds: 300,
            checksum: None,
        }
    }

    #[test]
    fn vms_gone_or_stopped_are_mismatches_that_affect_the_phase_waiting_for_them() {
        let now = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
        let mut state = StateFile::new(uuid::Uuid::nil(), now);
        let step = |id: &str, phase: &str| {
            let mut s = StepRecord::new(id, phase, id);
            s.status = StepStatus::Completed;
            s
        };
        state.deployment.steps = vec![step("create", "infra"), step("install", "k8s")];
        let plan = crate::plan::parse(
            "id: p\nphases:\n  - id: infra\n    steps:\n      - id: create\n        command: [\"true\"]\n  - id: k8s\n    gates:\n      - vm_running: {vms: [ctl]}\n    steps:\n      - id: install\n        command: [\"true\"]\n",
            std::path::Path::new("/p/plan.yaml"),
            "/p/plan.yaml",
            std::path::Path::new("/p"),
            &crate::plan::DiskFiles(std::path::Path::new("/p")),
        )
        .unwrap();
        let cached = vec!["ctl".to_string(), "worker".to_string(), "gpu".to_string()];
        let fresh = vec![vm("ctl", "deallocated"), vm("gpu", "running")];
        let found = compare_vms(&state, &cached, &fresh, Some(&plan), Some("create"));
        let got: Vec<(MismatchKind, &str, Option<&str>)> = found
            .iter()
            .map(|m| (m.kind, m.subject.as_str(), m.affects_step.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (MismatchKind::VmNotRunning, "ctl", Some("install")),
                (MismatchKind::VmGone, "worker", Some("create")),
            ]
        );
        assert_eq!(found[0].detail, "VM ctl is deallocated, not running");
    }
}
