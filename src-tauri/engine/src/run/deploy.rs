//! `deploy`, `resume` and `retry`: load the plan, check everything that would stop
//! a step from starting (plan, flags, variables, playbook files, Ansible), then drive
//! a [`RunSession`] step by step with the [`runner`](crate::run::runner).
//!
//! Progress goes to a callback the caller supplies (the CLI prints it; the app will
//! forward it to the window).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::plan::Action;
use crate::plan::builtin::PlanRef;
use crate::retry::RetryPolicy;
use crate::run::runner::{self, Output, StepCommand};
use crate::run::session::{Begun, Request, RunContext, RunSession, RunSummary};
use crate::secrets::{Redactor, secret_named};
use crate::state::fsops::FileOps;
use crate::state::lock::LockWait;
use crate::state::model::{
    AttemptOutcome, DeploymentStatus, EventKind, NewEvent, RunKind, RunOutcome, StepError,
};
use crate::state::store::Store;
use crate::timestamp::Timestamp;

/// The callback plugin, written beside the environment for `ansible-playbook`.
const CALLBACK_PLUGIN: &str = include_str!("../../ansible/callback_plugins/thinkube_json.py");

/// Everything a run needs from the caller. Build it with [`DeployArgs::from_env`]:
/// the CLI and the app both do, so both runs see the same environment.
#[derive(Debug, Clone)]
pub struct DeployArgs {
    pub kind: RunKind,
    /// For retry: the steps to run again (empty: every failed step). Ignored by
    /// deploy and resume.
    pub steps: Vec<String>,
    /// `--plan PATH|NAME`; resume and retry default to the deployment's own plan.
    pub plan: Option<String>,
    pub inventory: Option<PathBuf>,
    pub flags: BTreeMap<String, bool>,
    pub vars: BTreeMap<String, String>,
    /// THINKUBE_ANSIBLE_PLAYBOOK, if set.
    pub ansible_playbook: Option<PathBuf>,
    /// The PATH to look for ansible-playbook in.
    pub path_var: Option<OsString>,
    pub wait: LockWait,
    pub program: String,
    pub boot_id: Option<String>,
    /// Extra environment for every step, kept in memory only: how the desktop app
    /// hands an SSH password to Ansible (`THINKUBE_SSH_PASSWORD`, read by the
    /// inventory) without putting it on a command line or in a file.
    pub secret_env: BTreeMap<String, String>,
}

impl DeployArgs {
    /// A run of `kind` with what this process's environment says: ansible-playbook
    /// from `THINKUBE_ANSIBLE_PLAYBOOK` (when set and not empty), the `PATH` to look
    /// for it in, and this boot's id. Everything else is empty, to be set by the caller.
    pub fn from_env(kind: RunKind, program: &str) -> Self {
        DeployArgs {
            kind,
            steps: Vec::new(),
            plan: None,
            inventory: None,
            flags: BTreeMap::new(),
            vars: BTreeMap::new(),
            ansible_playbook: std::env::var_os("THINKUBE_ANSIBLE_PLAYBOOK")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            path_var: std::env::var_os("PATH"),
            wait: LockWait::NoWait,
            program: program.to_string(),
            boot_id: boot_id(),
            secret_env: BTreeMap::new(),
        }
    }
}

/// What happens, as it happens.
#[cfg_attr(
    feature = "ts",
    derive(ts_rs::TS),
    ts(export, rename = "DeployProgress")
)]
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Progress {
    RunStarted {
        run_id: String,
        plan_id: String,
        total: usize,
        done: usize,
    },
    StepStarted {
        run_id: String,
        step: String,
        title: String,
        phase: String,
        attempt: u32,
        index: usize,
        total: usize,
    },
    Output {
        step: String,
        output: Output,
    },
    StepFinished {
        step: String,
        outcome: AttemptOutcome,
        error: Option<StepError>,
    },
    Retrying {
        step: String,
        next_attempt: u32,
        #[cfg_attr(feature = "ts", ts(type = "number"))]
        delay_seconds: u64,
    },
    RunFinished {
        run_id: String,
        outcome: RunOutcome,
        status: DeploymentStatus,
    },
}

/// How a `deploy`, `resume` or `retry` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Ran(RunSummary),
    /// A gate blocked a phase: nothing of that phase ran.
    Blocked {
        gate: String,
        reason: String,
        phase: String,
        summary: RunSummary,
    },
    AlreadyCompleted {
        deployment_id: Option<String>,
    },
}

/// For a remote target: each host that does not answer on its SSH port, and each VM
/// (named as a host) whose cached facts say it is not running. Local targets: none.
fn reachability(
    cfg: &crate::config::InstallerConfig,
    state: Option<&crate::state::model::StateFile>,
) -> Vec<String> {
    if cfg.target == crate::config::TargetKind::Local {
        return Vec::new();
    }
    let mut problems = Vec::new();
    for h in &cfg.hosts {
        let vm = state.and_then(|s| {
            s.facts
                .infrastructure
                .iter()
                .find(|f| f.key == format!("vm/{}", h.name))
                .and_then(|f| f.value.get("power_state")?.as_str().map(String::from))
        });
        if let Some(power) = vm.filter(|p| p != "running") {
            problems.push(format!("VM {} is {power}", h.name));
            continue;
        }
        if let Err(e) =
            crate::facts::probe(h.address.trim(), h.ssh_port(), crate::facts::PROBE_TIMEOUT)
        {
            problems.push(format!(
                "host {} ({}:{}) does not answer on its SSH port: {e}",
                h.name,
                h.address.trim(),
                h.ssh_port()
            ));
        }
    }
    problems
}

/// A step that succeeded proved its `proves:` facts for every inventory host (this
/// machine for a local target).
fn record_proved(
    session: &mut RunSession,
    step: &crate::plan::Step,
    config: Option<&crate::config::InstallerConfig>,
    now: Timestamp,
) -> Result<()> {
    let hosts: Vec<String> = match config {
        Some(c) if c.target != crate::config::TargetKind::Local && !c.hosts.is_empty() => {
            c.hosts.iter().map(|h| h.name.clone()).collect()
        }
        _ => vec!["localhost".to_string()],
    };
    let event = NewEvent::new(
        EventKind::FactsUpdated,
        format!(
            "step {} proved {} for {}",
            step.id,
            step.proves.join(", "),
            hosts.join(", ")
        ),
    )
    .step(&step.id);
    session.record_facts(
        event,
        |s| {
            for host in &hosts {
                for kind in &step.proves {
                    crate::facts::observe(s, host, kind, true, now);
                }
            }
        },
        now,
    )?;
    Ok(())
}

/// What a gate observes about a host, as a runtime fact: (host, kind).
fn observed(gate: &crate::plan::Gate, choices: &crate::plan::Choices) -> Option<(String, String)> {
    let sub = |t: &str| crate::plan::substitute(t, &choices.vars).unwrap_or_else(|_| t.to_string());
    match gate {
        crate::plan::Gate::Tcp { host, port, .. } => {
            Some((sub(host), format!("tcp_port_{port}_open")))
        }
        crate::plan::Gate::InterfaceUp { name } => Some((
            "localhost".to_string(),
            format!("interface_{}_up", sub(name)),
        )),
        _ => None,
    }
}

/// Before a phase whose gates wait for VMs: when their cached facts are missing or
/// stale, one bulk refresh from the configured source, recorded with the count of
/// requests it made (and the run's total so far). A refresh that fails is recorded
/// and the gate then judges what is cached.
fn refresh_stale_vm_facts(
    session: &mut RunSession,
    gates: &[crate::plan::Gate],
    config: Option<&crate::config::InstallerConfig>,
    arm_requests: &mut u32,
) -> Result<()> {
    let vms: Vec<String> = gates
        .iter()
        .filter_map(|g| match g {
            crate::plan::Gate::VmRunning { vms } => Some(vms.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let now = Timestamp::now();
    let Some(config) = config.filter(|c| c.azure.is_some()) else {
        return Ok(());
    };
    if vms.is_empty() || !crate::facts::vms_stale(session.state(), &vms, now) {
        return Ok(());
    }
    match crate::facts::gather_vms(config, now) {
        Ok(mut refresh) => {
            *arm_requests += refresh.arm_requests;
            let run_id = session.run_id().to_string();
            if let Some(f) = refresh.facts.iter_mut().find(|f| f.key == "azure/refresh") {
                f.value["run_id"] = run_id.into();
                f.value["arm_requests_in_run"] = (*arm_requests).into();
            }
            let message = format!(
                "{} (this run: {} ARM requests so far)",
                refresh.message(),
                arm_requests
            );
            let event = NewEvent::new(EventKind::FactsUpdated, message);
            session.record_facts(event, |s| crate::facts::apply(s, refresh), now)?;
        }
        Err(e) => {
            let event = NewEvent::new(
                EventKind::FactsUpdated,
                format!("the VM facts could not be refreshed: {e}"),
            );
            session.record(event, now)?;
        }
    }
    Ok(())
}

/// This boot of the machine, to tell whether a requested restart happened.
/// `THINKUBE_BOOT_ID` stands in for it (tests of restarts).
pub fn boot_id() -> Option<String> {
    std::env::var("THINKUBE_BOOT_ID")
        .ok()
        .filter(|b| !b.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok())
        .map(|s| s.trim().to_string())
}

/// Runs the request to the end, a failure, or a stop.
pub fn execute(
    store: &Store,
    args: &DeployArgs,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> Result<Ended> {
    let now = Timestamp::now();
    let layout = store.layout().clone();
    let loaded = store.load(now)?.map(|l| l.state);
    let current = loaded.as_ref().map(|s| s.deployment.clone());
    // The wizard's configuration: the hosts a resume checks, the VM source of gates.
    let config = crate::config::load(&layout)?;
    let started = current.as_ref().is_some_and(|d| d.id.is_some());
    // Which plan: the one named, else the deployment's own, else the default.
    let spec = match (&args.plan, &current) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(d)) if started => d.plan_source.clone().or(d.plan_id.clone()),
        _ => None,
    };
    let plan_ref = PlanRef::parse(spec.as_deref())?;
    let plans_dir = layout.root.join("plans");
    let plan = plan_ref.load(&plans_dir)?;
    if let Some(d) = current.as_ref().filter(|_| started)
        && d.plan_id.as_deref() != Some(plan.id.as_str())
    {
        return Err(EngineError::Usage(format!(
            "this deployment runs plan `{}`, not `{}`; finish it or run `thinkube-deploy clean-state` first",
            d.plan_id.as_deref().unwrap_or("-"),
            plan.id
        )));
    }
    // Flags and variables: the deployment's own (those the plan still declares),
    // overridden by the command line (where `choose` refuses undeclared names).
    let stored = current
        .as_ref()
        .filter(|_| started)
        .map(|d| &d.configuration);
    let mut flags: BTreeMap<String, bool> = stored
        .map(|c| {
            c.flags
                .iter()
                .filter(|(k, _)| plan.flags.iter().any(|f| &f.name == *k))
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        })
        .unwrap_or_default();
    let mut vars: BTreeMap<String, String> = stored
        .map(|c| {
            c.vars
                .iter()
                .filter(|(k, _)| plan.vars.iter().any(|v| &v.name == *k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    flags.extend(args.flags.clone());
    vars.extend(args.vars.clone());
    let choices = plan.choose(&flags, &vars)?;
    let deployment_id = format!("d-{}", crate::state::store::new_run_id(now));
    let planned = plan.planned(&deployment_id, &choices, BTreeMap::new())?;
    // Everything a step needs, checked before anything is written or runs.
    let mut needs_ansible = false;
    let mut actions = BTreeMap::new();
    for (phase, step) in plan.steps() {
        if plan.skip_reason(phase, step, &choices.flags).is_some() {
            continue;
        }
        let action = plan.resolved_action(step, &choices)?;
        if let Action::Playbook { path, .. } = &action {
            needs_ansible = true;
            let full = plan.base_dir.join(path);
            let exists = match &plan_ref {
                // A built-in plan's own files are checked in the binary; they are
                // written to disk only once the run holds the lock.
                PlanRef::Builtin(b) if path == step_path(step) => {
                    crate::plan::PlanFiles::exists(*b, Path::new(path))
                }
                _ => full.is_file(),
            };
            if !exists {
                return Err(EngineError::PlaybookMissing {
                    step: step.id.clone(),
                    path: full,
                    hint: if path != step_path(step) {
                        " and its --var values"
                    } else {
                        ""
                    },
                });
            }
        }
        actions.insert(step.id.clone(), action);
    }
    let ansible = if needs_ansible {
        Some(runner::find_ansible_playbook(
            args.ansible_playbook.as_deref(),
            &layout.home,
            args.path_var.as_deref(),
        )?)
    } else {
        None
    };
    let callback_dir = layout.root.join("ansible/callback_plugins");
    let inventory = match &args.inventory {
        Some(p) if !p.is_file() => {
            return Err(EngineError::Usage(format!(
                "the inventory {} does not exist",
                p.display()
            )));
        }
        Some(p) => Some(p.clone()),
        None if layout.inventory_file().is_file() => Some(layout.inventory_file()),
        None => None,
    };
    if let Some(p) = &inventory {
        crate::config::check_inventory(p)?;
    }
    let inventory = inventory.map_or_else(|| "localhost,".to_string(), |p| p.display().to_string());
    // Resuming a remote deployment: its steps run against the inventory's hosts, so
    // check they answer (and that their VMs run, when the facts know them) before
    // anything runs, rather than letting a step fail confusingly.
    let unfinished = current
        .as_ref()
        .is_some_and(|d| started && d.status != crate::state::model::DeploymentStatus::Completed);
    if unfinished && let Some(cfg) = &config {
        let problems = reachability(cfg, loaded.as_ref());
        if !problems.is_empty() {
            return Err(EngineError::NotReachable { problems });
        }
    }
    let request = Request::new(args.kind, args.steps.clone(), planned);
    let ctx = RunContext {
        program: args.program.clone(),
        boot_id: args.boot_id.clone(),
        wait: args.wait,
    };
    let mut session = match RunSession::begin(store, request, &ctx, now)? {
        Begun::Run(s) => *s,
        Begun::AlreadyCompleted { deployment_id } => {
            return Ok(Ended::AlreadyCompleted { deployment_id });
        }
    };
    // The files the steps need, written now that the run holds the lock.
    let prepared = write_run_files(
        store,
        &plan_ref,
        &plans_dir,
        needs_ansible.then_some(callback_dir.as_path()),
    );
    if let Err(e) = prepared {
        let _ = session.finish(Timestamp::now());
        return Err(e);
    }
    let run_id = session.run_id().to_string();
    let record = session.deployment().record();
    let total = record
        .steps
        .iter()
        .filter(|s| s.status != crate::state::model::StepStatus::Skipped)
        .count();
    let done = record.count(crate::state::model::StepStatus::Completed);
    progress(Progress::RunStarted {
        run_id: run_id.clone(),
        plan_id: plan.id.clone(),
        total,
        done,
    });
    let mut env_base = base_env(&layout.home, &layout.root, &run_id, &callback_dir);
    env_base.extend(args.secret_env.clone());
    let secrets = run_secrets(&choices, &args.secret_env);
    // A command gate's arguments and error output may hold a variable's secret too.
    let hide = Redactor::new(secrets.iter().cloned());
    let mut gates_passed: Option<String> = None;
    // Gates that wait for VMs refresh stale VM facts from the configured source.
    let mut arm_requests = 0u32;
    while !stop.load(Ordering::SeqCst) {
        let Some(next) = session.next_step().cloned() else {
            break;
        };
        let Some((phase, step)) = plan.steps().find(|(_, s)| s.id == next.id) else {
            return Err(EngineError::Usage(format!(
                "step `{}` is not in plan `{}` any more; run `thinkube-deploy clean-state` to start over",
                next.id, plan.id
            )));
        };
        if gates_passed.as_deref() != Some(phase.id.as_str()) {
            refresh_stale_vm_facts(
                &mut session,
                &phase.gates,
                config.as_ref(),
                &mut arm_requests,
            )?;
            for gate in &phase.gates {
                let verdict =
                    crate::run::gates::check(gate, &plan.base_dir, &choices, session.state())
                        .map_err(|b| crate::run::gates::Blocked {
                            gate: hide.apply(b.gate),
                            reason: hide.apply(b.reason),
                        });
                let now = Timestamp::now();
                let seen = observed(gate, &choices);
                let passed = verdict.is_ok();
                let observe = |s: &mut crate::state::model::StateFile| {
                    if let Some((host, kind)) = &seen {
                        crate::facts::observe(s, host, kind, passed, now);
                    }
                };
                match verdict {
                    Ok(()) => {
                        let event = NewEvent::new(
                            EventKind::GateChecked,
                            format!("phase {}: gate {} passed", phase.id, gate_name(gate)),
                        );
                        session.record_facts(event, observe, now)?;
                    }
                    Err(blocked) => {
                        let event = NewEvent::new(
                            EventKind::GateChecked,
                            format!(
                                "phase {}: gate {} blocked: {}",
                                phase.id, blocked.gate, blocked.reason
                            ),
                        );
                        session.record_facts(event, observe, now)?;
                        let summary = session.finish(now)?;
                        progress(Progress::RunFinished {
                            run_id: summary.run_id.clone(),
                            outcome: summary.outcome,
                            status: summary.status,
                        });
                        return Ok(Ended::Blocked {
                            gate: blocked.gate,
                            reason: blocked.reason,
                            phase: phase.id.clone(),
                            summary,
                        });
                    }
                }
            }
            gates_passed = Some(phase.id.clone());
        }
        let Some(action) = actions.get(&step.id) else {
            return Err(EngineError::Usage(format!(
                "step `{}` does not apply with these flags",
                step.id
            )));
        };
        let policy = RetryPolicy::for_step(step.retries, step.retry_delay_seconds);
        let index = session
            .deployment()
            .record()
            .steps
            .iter()
            .filter(|s| s.status == crate::state::model::StepStatus::Completed)
            .count()
            + 1;
        let mut tries = 0;
        loop {
            tries += 1;
            let attempt_no = next.attempts.len() as u32 + tries;
            let log_rel = format!("logs/{run_id}/{}-{attempt_no}.log", step.id);
            let log_path = layout.root.join(&log_rel);
            let (attempt, _) =
                session.start_step(&step.id, None, Some(log_rel), Timestamp::now())?;
            progress(Progress::StepStarted {
                run_id: run_id.clone(),
                step: step.id.clone(),
                title: step.title.clone(),
                phase: phase.id.clone(),
                attempt,
                index,
                total,
            });
            let cmd = step_command(
                action,
                &plan.base_dir,
                ansible.as_deref(),
                &inventory,
                &env_base,
                &step.id,
                &secrets,
            );
            let finished = run_logged(
                &mut session,
                &step.id,
                &cmd,
                &log_path,
                stop,
                progress,
                store.fs(),
            );
            let finished = match finished {
                Ok(f) => f,
                Err(e) => runner::Finished {
                    exit_code: None,
                    stopped: false,
                    error: Some(StepError::message(format!("the step could not run: {e}"))),
                },
            };
            let now = Timestamp::now();
            if finished.stopped {
                progress(Progress::StepFinished {
                    step: step.id.clone(),
                    outcome: AttemptOutcome::Interrupted,
                    error: None,
                });
                break;
            }
            match finished.error {
                None => {
                    session.complete_step(&step.id, now)?;
                    if !step.proves.is_empty() {
                        record_proved(&mut session, step, config.as_ref(), now)?;
                    }
                    progress(Progress::StepFinished {
                        step: step.id.clone(),
                        outcome: AttemptOutcome::Success,
                        error: None,
                    });
                    if step.requires_restart && session.next_step().is_some() {
                        let summary = session.finish_awaiting_restart(
                            &step.id,
                            args.boot_id.clone(),
                            Timestamp::now(),
                        )?;
                        progress(Progress::RunFinished {
                            run_id: summary.run_id.clone(),
                            outcome: summary.outcome,
                            status: summary.status,
                        });
                        return Ok(Ended::Ran(summary));
                    }
                    break;
                }
                Some(error) => {
                    session.fail_step(&step.id, error.clone(), now)?;
                    progress(Progress::StepFinished {
                        step: step.id.clone(),
                        outcome: AttemptOutcome::Failed,
                        error: Some(error),
                    });
                    match policy.delay_before(tries + 1) {
                        Some(delay) if !stop.load(Ordering::SeqCst) => {
                            progress(Progress::Retrying {
                                step: step.id.clone(),
                                next_attempt: attempt + 1,
                                delay_seconds: delay.as_secs(),
                            });
                            if !wait_unless_stopped(delay, stop) {
                                break;
                            }
                            session.rerun_failed_step(&step.id)?;
                        }
                        _ => break,
                    }
                }
            }
        }
        if session
            .deployment()
            .record()
            .step(&step.id)
            .is_some_and(|s| s.status == crate::state::model::StepStatus::Failed)
        {
            break;
        }
    }
    let summary = session.finish(Timestamp::now())?;
    progress(Progress::RunFinished {
        run_id: summary.run_id.clone(),
        outcome: summary.outcome,
        status: summary.status,
    });
    Ok(Ended::Ran(summary))
}

/// Writes a built-in plan's files and the callback plugin, where they differ.
fn write_run_files(
    store: &Store,
    plan_ref: &PlanRef,
    plans_dir: &Path,
    callback_dir: Option<&Path>,
) -> Result<()> {
    if let PlanRef::Builtin(b) = plan_ref {
        b.materialize(&plans_dir.join(b.name), store.fs())?;
    }
    if let Some(dir) = callback_dir {
        let fs = store.fs();
        fs.create_dir_all(dir)
            .map_err(|e| EngineError::io("create the folder", dir, e))?;
        let file = dir.join("thinkube_json.py");
        if fs.read(&file).ok().flatten().as_deref() != Some(CALLBACK_PLUGIN.as_bytes()) {
            fs.replace(&file, CALLBACK_PLUGIN.as_bytes())
                .map_err(|e| EngineError::io("write", &file, e))?;
        }
    }
    Ok(())
}

fn gate_name(gate: &crate::plan::Gate) -> String {
    use crate::plan::Gate;
    match gate {
        Gate::Tcp { host, port, .. } => format!("tcp {host}:{port}"),
        Gate::Command { argv } => format!("command {}", argv.join(" ")),
        Gate::FileExists { path } => format!("file_exists {path}"),
        Gate::InterfaceUp { name } => format!("interface_up {name}"),
        Gate::VmRunning { vms } => format!("vm_running {}", vms.join(",")),
    }
}

fn step_path(step: &crate::plan::Step) -> &str {
    match &step.action {
        Action::Playbook { path, .. } => path,
        Action::Command { .. } => "",
    }
}

/// Runs one attempt with its log file, recording the child's pid once spawned.
fn run_logged(
    session: &mut RunSession,
    step: &str,
    cmd: &StepCommand,
    log_path: &Path,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
    fs: &dyn FileOps,
) -> Result<runner::Finished> {
    if let Some(dir) = log_path.parent() {
        fs.create_dir_all(dir)
            .map_err(|e| EngineError::io("create the folder", dir, e))?;
    }
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode_0600()
        .open(log_path)
        .map_err(|e| EngineError::io("open the log file", log_path, e))?;
    let mut out = |o: Output| {
        progress(Progress::Output {
            step: step.to_string(),
            output: o,
        })
    };
    let mut on_spawn = |p| {
        session
            .set_step_process(step, p, Timestamp::now())
            .map(|_| ())
    };
    runner::run(cmd, &mut log, &mut out, stop, &mut on_spawn)
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(crate::state::fsops::FILE_MODE)
    }
}

/// Waits `delay`, waking early when asked to stop. Returns false if stopped.
fn wait_unless_stopped(delay: Duration, stop: &AtomicBool) -> bool {
    let end = std::time::Instant::now() + delay;
    while std::time::Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(end - std::time::Instant::now()));
    }
    !stop.load(Ordering::SeqCst)
}

/// Environment every step gets.
fn base_env(
    home: &Path,
    root: &Path,
    run_id: &str,
    callback_dir: &Path,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("THINKUBE_INSTALLER_HOME".into(), home.display().to_string()),
        ("THINKUBE_ENV_ROOT".into(), root.display().to_string()),
        ("THINKUBE_RUN_ID".into(), run_id.to_string()),
        (
            "ANSIBLE_CALLBACK_PLUGINS".into(),
            callback_dir.display().to_string(),
        ),
        ("ANSIBLE_STDOUT_CALLBACK".into(), "thinkube_json".into()),
        ("ANSIBLE_NOCOLOR".into(), "1".into()),
        ("ANSIBLE_FORCE_COLOR".into(), "0".into()),
        ("ANSIBLE_RETRY_FILES_ENABLED".into(), "false".into()),
        ("ANSIBLE_LOCALHOST_WARNING".into(), "false".into()),
        ("ANSIBLE_INVENTORY_UNPARSED_WARNING".into(), "false".into()),
        ("PYTHONUNBUFFERED".into(), "1".into()),
    ])
}

fn step_command(
    action: &Action,
    base_dir: &Path,
    ansible: Option<&Path>,
    inventory: &str,
    env_base: &BTreeMap<String, String>,
    step: &str,
    secrets: &[String],
) -> StepCommand {
    let mut env = env_base.clone();
    env.insert("THINKUBE_STEP_ID".into(), step.to_string());
    let mut cmd = step_process(action, base_dir, ansible, inventory, env);
    // What the run hides everywhere, and what this step is given under a
    // secret-looking name.
    let own: Vec<String> = secret_named(&cmd.env).collect();
    cmd.redact = Redactor::new(secrets.iter().cloned().chain(own));
    cmd
}

/// The values a run hides in every step's output and gate verdict: variables of the
/// plan and of our own environment (which steps inherit) whose names look secret,
/// and the secrets the window gave for this run only (an SSH password).
fn run_secrets(
    choices: &crate::plan::Choices,
    secret_env: &BTreeMap<String, String>,
) -> Vec<String> {
    let inherited: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    secret_named(&inherited)
        .chain(secret_named(&choices.vars))
        .chain(secret_env.values().cloned())
        .collect()
}

fn step_process(
    action: &Action,
    base_dir: &Path,
    ansible: Option<&Path>,
    inventory: &str,
    mut env: BTreeMap<String, String>,
) -> StepCommand {
    match action {
        Action::Playbook { path, vars } => {
            let mut args: Vec<OsString> = vec![
                "-i".into(),
                inventory.into(),
                base_dir.join(path).into_os_string(),
            ];
            if !vars.is_empty() {
                args.push("-e".into());
                args.push(serde_json::to_string(vars).unwrap_or_default().into());
            }
            StepCommand {
                program: ansible
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| "ansible-playbook".into()),
                args,
                env,
                cwd: Some(base_dir.to_path_buf()),
                ansible: true,
                redact: Redactor::default(),
            }
        }
        Action::Command {
            argv,
            env: step_env,
            cwd,
        } => {
            env.extend(step_env.clone());
            let cwd = cwd
                .as_ref()
                .map(|c| base_dir.join(c))
                .unwrap_or_else(|| base_dir.to_path_buf());
            StepCommand {
                program: PathBuf::from(&argv[0]),
                args: argv[1..].iter().map(OsString::from).collect(),
                env,
                cwd: Some(cwd),
                ansible: false,
                redact: Redactor::default(),
            }
        }
    }
}
