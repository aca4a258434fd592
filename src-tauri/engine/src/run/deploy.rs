//! `deploy`, `resume` and `retry`: load the plan, check everything that would stop
//! a step from starting (plan, flags, variables, playbook files, Ansible), then drive
//! a [`RunSession`] step by step with the [`runner`](crate::run::runner).
//!
//! Progress goes to a callback the caller supplies (the CLI prints it; the app will
//! forward it to the window).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::plan::builtin::PlanRef;
use crate::plan::{Action, Choices, Plan};
use crate::retry::RetryPolicy;
use crate::run::runner::{self, Output, StepCommand};
use crate::run::session::{Begun, Request, RunContext, RunSession, RunSummary};
use crate::secrets::{Redactor, secret_named};
use crate::state::lock::LockWait;
use crate::state::model::{
    AttemptOutcome, DeploymentRecord, DeploymentStatus, EventKind, NewEvent, RunKind, RunOutcome,
    StepError, StepStatus,
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
    /// The environment steps inherit from this process: its secret-looking values
    /// are hidden in their output.
    pub inherited_env: BTreeMap<String, String>,
    /// The time, each time the run records something.
    pub clock: fn() -> Timestamp,
    /// `--skip-checks`: go on without the hosts' pre-flight (reachability, login,
    /// sudo). Host keys are checked all the same.
    pub skip_checks: bool,
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
            ansible_playbook: crate::run::runner::ansible_override(),
            path_var: std::env::var_os("PATH"),
            wait: LockWait::NoWait,
            program: program.to_string(),
            boot_id: boot_id(),
            secret_env: BTreeMap::new(),
            inherited_env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            clock: Timestamp::now,
            skip_checks: false,
        }
    }

    /// A value of the runs' environment: given in memory (the app), else inherited.
    fn env_value(&self, name: &str) -> Option<&str> {
        self.secret_env
            .get(name)
            .or_else(|| self.inherited_env.get(name))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
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
        let vm = state
            .and_then(|s| crate::state::fact_keys::vm(&s.facts.infrastructure, &h.name))
            .and_then(|v| v.power_state);
        if let Some(power) = vm.filter(|p| p != crate::state::fact_keys::VmFact::RUNNING) {
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
    now: Timestamp,
) -> Result<()> {
    let vms: Vec<String> = gates
        .iter()
        .filter_map(|g| match g {
            crate::plan::Gate::VmRunning { vms } => Some(vms.clone()),
            _ => None,
        })
        .flatten()
        .collect();
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
            let key = crate::state::fact_keys::FactKey::AzureRefresh.text();
            if let Some(f) = refresh.facts.iter_mut().find(|f| f.key == key)
                && let Some(mut r) = crate::state::fact_keys::value::<
                    crate::state::fact_keys::AzureRefresh,
                >(&f.value)
            {
                r.run_id = Some(run_id);
                r.arm_requests_in_run = Some(*arm_requests);
                f.value = crate::state::fact_keys::to_value(&r);
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

/// Runs the request to the end, a failure, or a stop. The stages, in order:
/// [`prepare`] (everything checked, nothing written), [`RunSession::begin`] (the
/// lock, the deployment matched to the plan, the run recorded), the run's files, and
/// [`Run::steps`] (each phase's gates, then each step's attempts).
pub fn execute(
    store: &Store,
    args: &DeployArgs,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> Result<Ended> {
    let now = (args.clock)();
    let (prepared, planned) = prepare(store, args, now)?;
    crate::run::spawn::find_setpriv_in_background();
    let request = Request::new(args.kind, args.steps.clone(), planned);
    let ctx = RunContext {
        program: args.program.clone(),
        boot_id: args.boot_id.clone(),
        wait: args.wait,
    };
    let session = match RunSession::begin(store, request, &ctx, now)? {
        Begun::Run(s) => *s,
        Begun::AlreadyCompleted { deployment_id } => {
            return Ok(Ended::AlreadyCompleted { deployment_id });
        }
    };
    // The files the steps need, written now that the run holds the lock.
    let callback_dir = prepared
        .ansible
        .is_some()
        .then_some(prepared.callback_dir.as_path());
    let written = write_run_files(store, &prepared.plan_ref, &prepared.plans_dir, callback_dir)
        .and_then(|()| match &prepared.inventory_beside {
            Some(b) => b.write(store.fs()),
            None => Ok(()),
        })
        .and_then(|()| match &prepared.inventory_file {
            Some(f) => crate::run::inventory::keep_copy(store.fs(), store.layout(), f),
            None => Ok(()),
        });
    if let Err(e) = written {
        let _ = session.finish((args.clock)());
        return Err(e);
    }
    Run::new(store, args, &prepared, session, stop, progress).steps()
}

/// What a run needs, resolved and checked before anything is written or runs.
struct Prepared {
    plan_ref: PlanRef,
    plans_dir: PathBuf,
    plan: crate::plan::Plan,
    choices: crate::plan::Choices,
    /// Each applicable step's action, variables substituted.
    actions: BTreeMap<String, Action>,
    /// `ansible-playbook`, when a step is a playbook.
    ansible: Option<PathBuf>,
    callback_dir: PathBuf,
    /// `-i` for ansible-playbook: the inventory's path, or `localhost,`.
    inventory: String,
    /// The inventory file the deployment runs against (none: this machine).
    inventory_file: Option<PathBuf>,
    /// Where the playbooks are, and the working folder of steps and gates.
    root: crate::run::source::Root,
    /// The inventory's copy beside the checkout's variable folders, for an upstream
    /// plan's run (written once the run holds the lock).
    inventory_beside: Option<crate::run::source::InventoryBeside>,
    /// The wizard's configuration: the hosts a resume checks, the VM source of gates.
    config: Option<crate::config::InstallerConfig>,
}

/// Loads the state, the configuration and the plan; resolves flags, variables, each
/// step's action, Ansible and the inventory; and, resuming a remote deployment,
/// checks that its hosts answer. Returns that, and the deployment the plan describes.
/// Writes nothing.
fn prepare(
    store: &Store,
    args: &DeployArgs,
    now: Timestamp,
) -> Result<(Prepared, crate::state::lifecycle::PlannedDeployment)> {
    let layout = store.layout();
    let loaded = store.load(now)?.map(|l| l.state);
    let config = crate::config::load(layout)?;
    // The deployment under way, if one has started.
    let current = loaded
        .as_ref()
        .map(|s| &s.deployment)
        .filter(|d| d.id.is_some());
    // Nothing to resume or retry is said before anything else is looked for (the
    // plan, Ansible): it is the answer whatever else is missing.
    if current.is_none() && args.kind != RunKind::Deploy {
        return Err(crate::run::session::nothing_to(
            args.kind,
            DeploymentStatus::NotStarted,
        ));
    }
    let plan_ref = which_plan(args, current, config.as_ref())?;
    let plans_dir = layout.root.join("plans");
    let plan = plan_ref.load(&plans_dir)?;
    if let Some(d) = current {
        same_plan(args, d, &plan)?;
    }
    // A run that carries on a deployment (anything but `deploy` of a completed one)
    // needs its secret values again: they were never kept.
    let carries_on =
        current.filter(|d| args.kind != RunKind::Deploy || d.status != DeploymentStatus::Completed);
    // The configuration's flags and variables are for its own plan only.
    let configured = config
        .as_ref()
        .filter(|c| current.is_none() && args.plan.as_ref().is_none_or(|p| p == &c.plan));
    let choices = choices(&plan, current.map(|d| &d.configuration), configured, args)?;
    if carries_on.is_some() {
        secrets_given_again(&plan, args)?;
    }
    let deployment_id = format!("d-{}", crate::state::store::new_run_id(now));
    let mut planned = plan.planned(&deployment_id, &choices, BTreeMap::new())?;
    let root = crate::run::source::root(&plan, &choices.vars, &layout.home);
    crate::run::source::check(&plan, &root)?;
    let actions = checked_actions(&plan, &plan_ref, &choices, root.dir())?;
    let needs_ansible = actions
        .values()
        .any(|a| matches!(a, Action::Playbook { .. }));
    let ansible = needs_ansible
        .then(|| {
            runner::find_ansible_playbook(
                args.ansible_playbook.as_deref(),
                &layout.home,
                args.path_var.as_deref(),
            )
        })
        .transpose()?;
    let (inventory, recorded) =
        crate::run::inventory::choose(args.inventory.as_deref(), layout, current)?;
    if needs_ansible && let Some(r) = &recorded {
        check_ssh_hosts(
            layout,
            args,
            config.as_ref(),
            Path::new(&r.path),
            uses_become(&plan_ref, &plan, &actions, root.dir()),
        )?;
    }
    let inventory_beside = recorded.as_ref().and_then(|r| {
        crate::run::source::inventory_beside(
            &root,
            Path::new(&r.path),
            &layout.root.join("ansible/inventory"),
        )
    });
    let inventory = inventory_beside
        .as_ref()
        .map_or(inventory, |b| b.to.display().to_string());
    let problems = PlanToCheck {
        plan: &plan,
        choices: &choices,
        root: &root,
        ansible: ansible.as_deref(),
        inventory: recorded.as_ref().map(|r| Path::new(&r.path)),
        carries_on,
    }
    .problems(layout, args)?;
    if !problems.is_empty() {
        return Err(EngineError::PlanCheck { problems });
    }
    let inventory_file = recorded.as_ref().map(|r| PathBuf::from(&r.path));
    planned.configuration.inventory = recorded;
    // Resuming a remote deployment: its steps run against the inventory's hosts, so
    // check they answer (and that their VMs run, when the facts know them) before
    // anything runs, rather than letting a step fail confusingly.
    let unfinished = current.is_some_and(|d| d.status != DeploymentStatus::Completed);
    if unfinished && let Some(cfg) = &config {
        let problems = reachability(cfg, loaded.as_ref());
        if !problems.is_empty() {
            return Err(EngineError::NotReachable { problems });
        }
    }
    let prepared = Prepared {
        plan_ref,
        plans_dir,
        plan,
        choices,
        actions,
        ansible,
        callback_dir: layout.root.join("ansible/callback_plugins"),
        inventory,
        inventory_file,
        root,
        inventory_beside,
        config,
    };
    Ok((prepared, planned))
}

/// The deployment `d` runs the plan loaded now: the same plan, and (unless
/// `--plan` takes the change) unchanged since it last ran.
fn same_plan(args: &DeployArgs, d: &DeploymentRecord, plan: &Plan) -> Result<()> {
    // The deployment's own plan, changed since it last ran: the change is taken only
    // when asked for with `--plan`.
    if args.plan.is_none()
        && let Some(then) = d.plan_digest.as_deref()
        && then != plan.digest
    {
        let source = d.plan_source.as_deref().unwrap_or(&plan.id);
        return Err(EngineError::Usage(format!(
            "the plan {source} changed since this deployment last ran it ({} then, {} now): see it with `thinkube-deploy plan show --plan {source}`, then run it as it is now with `--plan {source}` (steps are matched by id, and what changed is shown), or put the earlier one back. Nothing ran",
            crate::run::inventory::short_digest(then),
            crate::run::inventory::short_digest(&plan.digest)
        )));
    }
    if d.plan_id.as_deref() != Some(plan.id.as_str()) {
        return Err(EngineError::Usage(format!(
            "this deployment runs plan `{}`, not `{}`; finish it or run `thinkube-deploy clean-state` first",
            d.plan_id.as_deref().unwrap_or("-"),
            plan.id
        )));
    }
    Ok(())
}

/// The inventory's SSH hosts, read once: a password login needs `sshpass`, and
/// every host that answers must offer the key that was trusted; unless the checks
/// are skipped, each logs in (and becomes root when the plan needs it).
fn check_ssh_hosts(
    layout: &crate::paths::Layout,
    args: &DeployArgs,
    config: Option<&crate::config::InstallerConfig>,
    inventory: &Path,
    uses_become: bool,
) -> Result<()> {
    // The inventory's SSH hosts, read once: a password login needs `sshpass`, and
    // every host that answers must offer the key that was trusted.
    use crate::facts::host_keys;
    let hosts = host_keys::ssh_hosts(inventory)?;
    let wizard_password = config.is_some_and(|c| {
        c.ssh_auth == crate::config::SshAuth::Password
            && c.target != crate::config::TargetKind::Local
    });
    if (wizard_password || hosts.iter().any(|h| h.password))
        && runner::on_path("sshpass", args.path_var.as_deref()).is_none()
    {
        return Err(EngineError::ToolMissing {
            tool: "sshpass",
            why: "the inventory logs in to its hosts with a password, which Ansible does through `sshpass`".into(),
        });
    }
    if let Some(refused) = host_keys::refusal(&layout.home, &host_keys::check(&layout.home, &hosts))
    {
        return Err(refused);
    }
    if !args.skip_checks {
        preflight(&layout.home, &hosts, args, uses_become)?;
    }
    Ok(())
}

/// What [`PlanToCheck::problems`] checks: the plan as chosen, the folder it was read
/// from, the Ansible and inventory its playbooks would run with, and the deployment
/// it carries on (whose completed steps need nothing more).
#[derive(Clone, Copy)]
struct PlanToCheck<'a> {
    plan: &'a Plan,
    choices: &'a Choices,
    root: &'a crate::run::source::Root,
    ansible: Option<&'a Path>,
    inventory: Option<&'a Path>,
    carries_on: Option<&'a DeploymentRecord>,
}

impl PlanToCheck<'_> {
    /// What stops the plan from running as chosen: the checks of `plan check` for an
    /// upstream plan (its playbooks are another project's: they must load, match hosts
    /// and have what they require), and for every plan the configuration a flag's
    /// programs read, while a step behind the flag is still to run.
    fn problems(&self, layout: &crate::paths::Layout, args: &DeployArgs) -> Result<Vec<String>> {
        let PlanToCheck {
            plan,
            choices,
            root,
            ansible,
            inventory,
            carries_on,
        } = *self;
        let env = |name: &str| args.env_value(name).map(OsString::from);
        // The configuration a flag's programs read must agree with the flag before
        // anything runs, for every plan (`plan check` says the same), while a step
        // behind the flag is still to run.
        let to_run = |step: &str| {
            carries_on
                .and_then(|d| d.step(step))
                .is_none_or(|r| r.status != StepStatus::Completed)
        };
        // An upstream plan's playbooks are another project's: before anything runs,
        // check that they load, match hosts and have what they require (`plan check`,
        // which checks the flags' configuration too).
        Ok(match ansible {
            Some(ansible) if plan.upstream.is_some() => crate::run::plan_check::check(
                plan,
                choices,
                &crate::run::plan_check::CheckInputs {
                    home: &layout.home,
                    env_root: &layout.root,
                    ansible_playbook: ansible,
                    inventory,
                    env: &env,
                    to_run: &to_run,
                },
            )?
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect(),
            _ => crate::run::plan_check::flag_config_problems(
                plan,
                choices,
                root.dir(),
                &env,
                &to_run,
            )
            .iter()
            .map(|p| p.to_string())
            .collect(),
        })
    }
}

/// The plan named, else the deployment's own, else the default.
fn which_plan(
    args: &DeployArgs,
    current: Option<&DeploymentRecord>,
    config: Option<&crate::config::InstallerConfig>,
) -> Result<PlanRef> {
    let spec = match (&args.plan, current) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(d)) => d.plan_source.clone().or(d.plan_id.clone()),
        // A new deployment runs the configured plan (the wizard's or `configure`'s).
        (None, None) => config
            .map(|c| c.plan.clone())
            .filter(|p| !p.trim().is_empty()),
    };
    PlanRef::parse(spec.as_deref())
}

/// Flags and variables: the deployment's own (those the plan still declares), or for
/// a new deployment of the configured plan the configuration's (the wizard's or
/// `configure`'s); overridden by the command line (where `choose` refuses undeclared
/// names).
fn choices(
    plan: &crate::plan::Plan,
    stored: Option<&crate::state::model::Configuration>,
    configured: Option<&crate::config::InstallerConfig>,
    args: &DeployArgs,
) -> Result<crate::plan::Choices> {
    let (base_flags, base_vars) = match (stored, configured) {
        (Some(c), _) => (Some(&c.flags), Some(&c.vars)),
        (None, Some(c)) => (Some(&c.flags), Some(&c.vars)),
        (None, None) => (None, None),
    };
    let mut flags: BTreeMap<String, bool> = base_flags
        .into_iter()
        .flatten()
        .filter(|(k, _)| plan.flags.iter().any(|f| &f.name == *k))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let mut vars: BTreeMap<String, String> = base_vars
        .into_iter()
        .flatten()
        .filter(|(k, _)| plan.vars.iter().any(|v| &v.name == *k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    flags.extend(args.flags.clone());
    vars.extend(args.vars.clone());
    Ok(plan.choose(&flags, &vars)?)
}

/// A secret-named variable's value given at `deploy` is never kept, so a later run
/// must be given it again: its plan default never silently takes its place.
fn secrets_given_again(plan: &crate::plan::Plan, args: &DeployArgs) -> Result<()> {
    let missing: Vec<&str> = plan
        .vars
        .iter()
        .filter(|v| v.default.is_some() && crate::secrets::is_secret_key(&v.name))
        .filter(|v| !args.vars.contains_key(&v.name))
        .map(|v| v.name.as_str())
        .collect();
    match missing.as_slice() {
        [] => Ok(()),
        names => Err(EngineError::Usage(format!(
            "{} looks secret, so the value this deployment started with was not kept, and the plan's default is not used in its place: give it again ({}), the same value or the default on purpose. Nothing ran",
            names
                .iter()
                .map(|n| format!("variable `{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
            names
                .iter()
                .map(|n| format!("--var {n}=VALUE"))
                .collect::<Vec<_>>()
                .join(" ")
        ))),
    }
}

/// The hosts' pre-flight (`hosts check`) before anything runs: each answers, its
/// login works and, when the plan becomes root, so does sudo.
fn preflight(
    home: &Path,
    hosts: &[crate::facts::host_keys::SshHost],
    args: &DeployArgs,
    needs_sudo: bool,
) -> Result<()> {
    use crate::facts::host_keys;
    let checks = host_keys::preflight(
        home,
        hosts,
        host_keys::Logins {
            password: args.env_value(crate::config::SSH_PASSWORD_ENV),
            become_password: args.env_value(host_keys::BECOME_PASSWORD_ENV),
            needs_sudo,
            missing_password: None,
        },
    );
    let problems: Vec<String> = checks
        .iter()
        .filter(|c| !c.problems.is_empty())
        .map(|c| format!("{}: {}", c.host.describe(), c.problems.join("; ")))
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    Err(EngineError::Preflight { problems })
}

/// Whether any playbook the run would use becomes another user (`become: true`
/// in a play, block or task): then sudo must work on the hosts.
fn uses_become(
    plan_ref: &PlanRef,
    plan: &crate::plan::Plan,
    actions: &BTreeMap<String, Action>,
    root: &Path,
) -> bool {
    actions.values().any(|a| {
        let Action::Playbook { path, .. } = a else {
            return false;
        };
        let text = match plan_ref {
            PlanRef::Builtin(b) if plan.upstream.is_none() => b
                .files
                .iter()
                .find(|(f, _)| f == path)
                .map(|(_, t)| (*t).to_string()),
            _ => std::fs::read_to_string(root.join(path)).ok(),
        };
        // A playbook that cannot be read is named by the checks before; count it
        // as becoming, so sudo is checked rather than assumed.
        text.is_none_or(|t| {
            t.lines().any(|l| {
                let l = l.trim_start().trim_start_matches("- ");
                l.strip_prefix("become:").is_some_and(|v| {
                    matches!(
                        v.trim()
                            .trim_matches(['"', '\''])
                            .to_ascii_lowercase()
                            .as_str(),
                        "true" | "yes" | "on"
                    )
                })
            })
        })
    })
}

/// Whether a run of `plan` with `choices` needs sudo on its hosts: a playbook of a
/// step that applies becomes another user. (For the wizard's pre-flight; a step
/// whose playbook is not there yet counts as becoming, so sudo is checked.)
pub fn plan_becomes(
    plan_ref: &PlanRef,
    plan: &crate::plan::Plan,
    choices: &crate::plan::Choices,
    home: &Path,
) -> bool {
    let root = crate::run::source::root(plan, &choices.vars, home);
    let actions: BTreeMap<String, Action> = plan
        .steps()
        .filter(|(phase, step)| plan.skip_reason(phase, step, &choices.flags).is_none())
        .filter_map(|(_, step)| Some((step.id.clone(), plan.resolved_action(step, choices).ok()?)))
        .collect();
    uses_become(plan_ref, plan, &actions, root.dir())
}

/// Each applicable step's action, with every playbook it names checked to exist.
fn checked_actions(
    plan: &crate::plan::Plan,
    plan_ref: &PlanRef,
    choices: &crate::plan::Choices,
    root: &Path,
) -> Result<BTreeMap<String, Action>> {
    let mut actions = BTreeMap::new();
    for (phase, step) in plan.steps() {
        if plan.skip_reason(phase, step, &choices.flags).is_some() {
            continue;
        }
        let action = plan.resolved_action(step, choices)?;
        if let Action::Playbook { path, .. } = &action {
            let full = root.join(path);
            let exists = match plan_ref {
                // A built-in plan's own files are checked in the binary; they are
                // written to disk only once the run holds the lock.
                PlanRef::Builtin(b) if path == step_path(step) && plan.upstream.is_none() => {
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
            // A literal path must stay inside the plan's folder once links are
            // followed too (the plan's own check sees only the path's text).
            if (!matches!(plan_ref, PlanRef::Builtin(_)) || plan.upstream.is_some())
                && path == step_path(step)
            {
                outside_plan_folder(root, &full, &step.id)?;
            }
        }
        actions.insert(step.id.clone(), action);
    }
    Ok(actions)
}

/// Refuses a playbook that a symbolic link takes outside the plan's folder.
fn outside_plan_folder(base: &Path, full: &Path, step: &str) -> Result<()> {
    let io = |e| EngineError::io("resolve the playbook path", full, e);
    let (base_real, real) = (
        base.canonicalize().map_err(io)?,
        full.canonicalize().map_err(io)?,
    );
    if real.starts_with(&base_real) {
        return Ok(());
    }
    Err(EngineError::Usage(format!(
        "step `{step}`: playbook {} leads to {} through a symbolic link, outside the plan's folder {}; playbook paths must stay inside it (use a `${{var}}` for a path elsewhere). Nothing ran",
        full.display(),
        real.display(),
        base_real.display()
    )))
}

/// How one step ended, for the loop over steps.
enum StepEnd {
    /// Completed (or stopped): go on to the next step, which checks the stop flag.
    Next,
    /// Failed after its retries: the run ends.
    Failed,
    /// Completed, and asked for a restart before the rest of the plan.
    AwaitingRestart,
}

/// A run under way: the session and what every step of it shares.
struct Run<'a> {
    store: &'a Store,
    args: &'a DeployArgs,
    prepared: &'a Prepared,
    session: RunSession,
    stop: &'a AtomicBool,
    progress: &'a mut dyn FnMut(Progress),
    run_id: String,
    /// Steps that run (not skipped), for "step N of M".
    total: usize,
    env_base: BTreeMap<String, String>,
    /// The values hidden in every step's output and gate verdict.
    secrets: Vec<String>,
    hide: Redactor,
    /// The phase whose gates have passed in this run.
    gates_passed: Option<String>,
    /// ARM requests made to refresh stale VM facts for gates.
    arm_requests: u32,
    /// Each plan step's phase and place in it, by step id.
    plan_index: HashMap<String, (usize, usize)>,
}

impl<'a> Run<'a> {
    fn new(
        store: &'a Store,
        args: &'a DeployArgs,
        prepared: &'a Prepared,
        session: RunSession,
        stop: &'a AtomicBool,
        progress: &'a mut dyn FnMut(Progress),
    ) -> Self {
        let layout = store.layout();
        let run_id = session.run_id().to_string();
        let record = session.deployment().record();
        let total = record
            .steps
            .iter()
            .filter(|s| s.status != StepStatus::Skipped)
            .count();
        progress(Progress::RunStarted {
            run_id: run_id.clone(),
            plan_id: prepared.plan.id.clone(),
            total,
            done: record.count(StepStatus::Completed),
        });
        let mut env_base = base_env(&layout.home, &layout.root, &run_id, &prepared.callback_dir);
        // An upstream checkout's playbooks run with its own Ansible configuration
        // (roles_path and the like); the environment above still wins over it where
        // it must (host key checking stays on).
        if !matches!(prepared.root, crate::run::source::Root::PlanFolder(_)) {
            let cfg = prepared.root.dir().join("ansible.cfg");
            if cfg.is_file() {
                env_base.insert("ANSIBLE_CONFIG".into(), cfg.display().to_string());
            }
        }
        env_base.extend(args.secret_env.clone());
        let secrets = run_secrets(&prepared.choices, &args.inherited_env, &args.secret_env);
        // A command gate's arguments and error output may hold a variable's secret too.
        let hide = Redactor::new(secrets.iter().cloned());
        Run {
            store,
            args,
            prepared,
            session,
            stop,
            progress,
            run_id,
            total,
            env_base,
            secrets,
            hide,
            gates_passed: None,
            arm_requests: 0,
            plan_index: prepared
                .plan
                .phases
                .iter()
                .enumerate()
                .flat_map(|(p, phase)| {
                    phase
                        .steps
                        .iter()
                        .enumerate()
                        .map(move |(i, s)| (s.id.clone(), (p, i)))
                })
                .collect(),
        }
    }

    fn now(&self) -> Timestamp {
        (self.args.clock)()
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Each step the session says is next, its phase's gates first, until the plan
    /// is done, a step fails, a gate blocks, a restart is due, or a stop.
    fn steps(mut self) -> Result<Ended> {
        let plan = &self.prepared.plan;
        while !self.stopped() {
            let Some(next) = self.session.next_step().cloned() else {
                break;
            };
            let found = self.plan_index.get(&next.id).map(|(p, i)| {
                let phase = &plan.phases[*p];
                (phase, &phase.steps[*i])
            });
            let Some((phase, step)) = found else {
                return Err(EngineError::Usage(format!(
                    "step `{}` is not in plan `{}` any more; run `thinkube-deploy clean-state` to start over",
                    next.id, plan.id
                )));
            };
            if self.gates_passed.as_deref() != Some(phase.id.as_str()) {
                match self.phase_gates(phase)? {
                    GatesEnd::Passed => {}
                    GatesEnd::Stopped => break,
                    GatesEnd::Blocked(blocked) => {
                        let now = self.now();
                        let summary = self.finish(|s| s.finish(now))?;
                        return Ok(Ended::Blocked {
                            gate: blocked.gate,
                            reason: blocked.reason,
                            phase: phase.id.clone(),
                            summary,
                        });
                    }
                }
                self.gates_passed = Some(phase.id.clone());
            }
            match self.step(phase, step, next.attempts.len() as u32)? {
                StepEnd::Next => {}
                StepEnd::Failed => break,
                StepEnd::AwaitingRestart => {
                    let (now, boot_id) = (self.now(), self.args.boot_id.clone());
                    let summary =
                        self.finish(|s| s.finish_awaiting_restart(&step.id, boot_id, now))?;
                    return Ok(Ended::Ran(summary));
                }
            }
        }
        let now = self.now();
        Ok(Ended::Ran(self.finish(|s| s.finish(now))?))
    }

    /// Ends the session with `end` and reports it: the one place a run finishes.
    fn finish(self, end: impl FnOnce(RunSession) -> Result<RunSummary>) -> Result<RunSummary> {
        let summary = end(self.session)?;
        (self.progress)(Progress::RunFinished {
            run_id: summary.run_id.clone(),
            outcome: summary.outcome,
            status: summary.status,
        });
        Ok(summary)
    }

    /// Checks `phase`'s gates in order, recording each verdict (and what it observed
    /// of a host); the first that blocks is returned.
    fn phase_gates(&mut self, phase: &crate::plan::Phase) -> Result<GatesEnd> {
        let prepared = self.prepared;
        let now = self.now();
        refresh_stale_vm_facts(
            &mut self.session,
            &phase.gates,
            prepared.config.as_ref(),
            &mut self.arm_requests,
            now,
        )?;
        for gate in &phase.gates {
            let verdict = crate::run::gates::check(
                gate,
                prepared.root.dir(),
                &prepared.choices,
                self.session.state(),
                self.stop,
                &self.hide,
            )
            .map_err(|b| crate::run::gates::Blocked {
                gate: self.hide.apply(b.gate),
                reason: self.hide.apply(b.reason),
            });
            // A stop while a gate was checked ends the run before the phase; the
            // gate's verdict is not recorded (it was cut short).
            if self.stopped() {
                return Ok(GatesEnd::Stopped);
            }
            let now = self.now();
            let seen = observed(gate, &prepared.choices);
            let passed = verdict.is_ok();
            let observe = |s: &mut crate::state::model::StateFile| {
                if let Some((host, kind)) = &seen {
                    crate::facts::observe(s, host, kind, passed, now);
                }
            };
            let message = match &verdict {
                Ok(()) => format!("phase {}: gate {} passed", phase.id, gate_name(gate)),
                Err(b) => format!("phase {}: gate {} blocked: {}", phase.id, b.gate, b.reason),
            };
            self.session.record_facts(
                NewEvent::new(EventKind::GateChecked, message),
                observe,
                now,
            )?;
            if let Err(blocked) = verdict {
                return Ok(GatesEnd::Blocked(blocked));
            }
        }
        Ok(GatesEnd::Passed)
    }

    /// Runs `step`'s attempts, `earlier` attempts having been made before this run,
    /// retrying by its policy.
    fn step(
        &mut self,
        phase: &crate::plan::Phase,
        step: &crate::plan::Step,
        earlier: u32,
    ) -> Result<StepEnd> {
        let Some(action) = self.prepared.actions.get(&step.id) else {
            return Err(EngineError::Usage(format!(
                "step `{}` does not apply with these flags",
                step.id
            )));
        };
        let policy = RetryPolicy::for_step(step.retries, step.retry_delay_seconds);
        let index = self
            .session
            .deployment()
            .record()
            .count(StepStatus::Completed)
            + 1;
        let mut tries = 0;
        loop {
            tries += 1;
            let (attempt, finished) = self.attempt(phase, step, action, earlier + tries, index)?;
            let now = self.now();
            if finished.stopped {
                self.report_step(step, AttemptOutcome::Interrupted, None);
                return Ok(StepEnd::Next);
            }
            let Some(error) = finished.error else {
                self.session.complete_step(&step.id, now)?;
                if !step.proves.is_empty() {
                    record_proved(&mut self.session, step, self.prepared.config.as_ref(), now)?;
                }
                self.report_step(step, AttemptOutcome::Success, None);
                if step.requires_restart && self.session.next_step().is_some() {
                    return Ok(StepEnd::AwaitingRestart);
                }
                return Ok(StepEnd::Next);
            };
            self.session.fail_step(&step.id, error.clone(), now)?;
            self.report_step(step, AttemptOutcome::Failed, Some(error));
            let Some(delay) = policy.delay_before(tries + 1).filter(|_| !self.stopped()) else {
                return Ok(StepEnd::Failed);
            };
            (self.progress)(Progress::Retrying {
                step: step.id.clone(),
                next_attempt: attempt + 1,
                delay_seconds: delay.as_secs(),
            });
            if !wait_unless_stopped(delay, self.stop) {
                return Ok(StepEnd::Failed);
            }
            self.session.rerun_failed_step(&step.id, self.now())?;
        }
    }

    /// One attempt, numbered `attempt_no`: recorded running, its process run with
    /// its own log, and how it ended (not yet recorded).
    fn attempt(
        &mut self,
        phase: &crate::plan::Phase,
        step: &crate::plan::Step,
        action: &Action,
        attempt_no: u32,
        index: usize,
    ) -> Result<(u32, runner::Finished)> {
        let log_rel = format!("logs/{}/{}-{attempt_no}.log", self.run_id, step.id);
        let log_path = self.store.layout().root.join(&log_rel);
        let now = self.now();
        let (attempt, _) = self
            .session
            .start_step(&step.id, None, Some(log_rel), now)?;
        (self.progress)(Progress::StepStarted {
            run_id: self.run_id.clone(),
            step: step.id.clone(),
            title: step.title.clone(),
            phase: phase.id.clone(),
            attempt,
            index,
            total: self.total,
        });
        let cmd = step_command(
            action,
            self.prepared.root.dir(),
            self.prepared.ansible.as_deref(),
            &self.prepared.inventory,
            &self.env_base,
            &step.id,
            &self.secrets,
        );
        let finished = self
            .run_logged(&step.id, &cmd, &log_path)
            .unwrap_or_else(|e| runner::Finished {
                exit_code: None,
                stopped: false,
                error: Some(StepError::message(format!("the step could not run: {e}"))),
                notes: Vec::new(),
            });
        for note in &finished.notes {
            let event = NewEvent::new(EventKind::StepNote, note.clone()).step(&step.id);
            self.session.record(event, self.now())?;
        }
        Ok((attempt, finished))
    }

    /// Runs one attempt's process with its log file, recording the child's pid once
    /// spawned and forwarding its output.
    fn run_logged(
        &mut self,
        step: &str,
        cmd: &StepCommand,
        log_path: &Path,
    ) -> Result<runner::Finished> {
        if let Some(dir) = log_path.parent() {
            self.store
                .fs()
                .create_dir_all(dir)
                .map_err(|e| EngineError::io("create the folder", dir, e))?;
        }
        let mut log = crate::state::fsops::open_append_regular(log_path)
            .map_err(|e| EngineError::io("open the log file", log_path, e))?;
        let (progress, session, clock) = (&mut *self.progress, &mut self.session, self.args.clock);
        let mut out = |o: Output| {
            progress(Progress::Output {
                step: step.to_string(),
                output: o,
            })
        };
        let mut on_spawn = |p| session.set_step_process(step, p, clock()).map(|_| ());
        runner::run(cmd, &mut log, &mut out, self.stop, &mut on_spawn)
    }

    fn report_step(
        &mut self,
        step: &crate::plan::Step,
        outcome: AttemptOutcome,
        error: Option<StepError>,
    ) {
        (self.progress)(Progress::StepFinished {
            step: step.id.clone(),
            outcome,
            error,
        });
    }
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

/// How a phase's gates ended.
enum GatesEnd {
    Passed,
    Blocked(crate::run::gates::Blocked),
    /// A stop came while a gate was checked.
    Stopped,
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
        // Host keys are checked, strictly, against the installer's own known_hosts
        // (trusted with `thinkube-deploy hosts trust`); never turned off.
        ("ANSIBLE_HOST_KEY_CHECKING".into(), "True".into()),
        (
            "ANSIBLE_SSH_COMMON_ARGS".into(),
            crate::facts::host_keys::ssh_common_args(home),
        ),
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
    inherited: &BTreeMap<String, String>,
    secret_env: &BTreeMap<String, String>,
) -> Vec<String> {
    secret_named(inherited)
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
