//! `plan check`: before anything runs, whether a plan can run as chosen. Every
//! applicable step's playbook exists; Ansible itself loads each one (what
//! `--syntax-check` does, and it also resolves every play's hosts) with the
//! checkout's configuration and the deployment's inventory; every play matches a
//! host; and every variable a playbook requires (its "Verify required variables"
//! asserts, its `vars_prompt` without a default) has a value in the inventory, its
//! group variables, the play or the step's `vars`.
//!
//! One `ansible-playbook --list-hosts` loads all playbooks at once (a few seconds
//! for the whole thinkube plan); only when it fails is each loaded alone, to name
//! every one that fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::plan::{Action, Choices, Plan};
use crate::run::source::{self, Root};

/// One thing that stops the plan from running as chosen.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckProblem {
    /// The step whose playbook it is.
    pub step: String,
    /// The file it is in (the playbook, or the file Ansible names).
    pub file: String,
    pub line: Option<u64>,
    pub message: String,
}

impl std::fmt::Display for CheckProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = self.line.map(|l| format!(":{l}")).unwrap_or_default();
        write!(f, "{}: {}{at}: {}", self.step, self.file, self.message)
    }
}

/// What `plan check` found.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub plan: String,
    /// Where the playbooks were read from.
    pub root: String,
    /// The checkout's commit, when it is a git checkout.
    pub commit: Option<String>,
    /// The inventory Ansible was given (`localhost,` when none).
    pub inventory: String,
    /// Playbook steps checked.
    pub playbooks: usize,
    pub problems: Vec<CheckProblem>,
}

/// What the check needs besides the plan.
pub struct CheckInputs<'a> {
    pub home: &'a Path,
    /// The environment's folder (for the inventory's copy beside group variables).
    pub env_root: &'a Path,
    pub ansible_playbook: &'a Path,
    /// The inventory file, if any.
    pub inventory: Option<&'a Path>,
    /// The environment the steps would inherit: a command step's program is looked
    /// for in its `PATH`, a flag's `config.env` is read in it.
    pub env: &'a dyn Fn(&str) -> Option<std::ffi::OsString>,
    /// Whether a step is still to run: a flag's configuration is checked only while
    /// some step behind the flag is (a deployment resumed after them needs no check).
    pub to_run: &'a dyn Fn(&str) -> bool,
}

/// Checks `plan` as `choices` make it for the environment at `layout`, with its
/// inventory (`inventory`, else the wizard's when there is one) and the
/// ansible-playbook that runs would use (`ansible_override`, else the installer's
/// own, else `path`'s).
pub fn check_environment(
    layout: &crate::paths::Layout,
    plan: &Plan,
    choices: &Choices,
    inventory: Option<PathBuf>,
    ansible_override: Option<&Path>,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<CheckReport> {
    let path = env("PATH");
    let path = path.as_deref();
    let inventory = match inventory {
        Some(p) if !p.is_file() => {
            return Err(crate::error::EngineError::Usage(format!(
                "the inventory {} does not exist",
                p.display()
            )));
        }
        Some(p) => Some(std::path::absolute(&p).unwrap_or(p)),
        None => Some(layout.inventory_file()).filter(|p| p.is_file()),
    };
    if let Some(inv) = &inventory {
        crate::config::check_inventory(inv)?;
    }
    // Ansible is needed only for playbooks: a plan of commands is checked without it.
    let ansible =
        match crate::run::runner::find_ansible_playbook(ansible_override, &layout.home, path) {
            Ok(a) => a,
            Err(e) if has_playbooks(plan, choices) => return Err(e),
            Err(_) => PathBuf::new(),
        };
    check(
        plan,
        choices,
        &CheckInputs {
            home: &layout.home,
            env_root: &layout.root,
            ansible_playbook: &ansible,
            inventory: inventory.as_deref(),
            env,
            to_run: &|_| true,
        },
    )
}

/// Checks the plan of a configuration not saved yet (the wizard's review page),
/// with the inventory it would write, in a file of this check's own that is removed
/// when it ends.
pub fn check_config(
    layout: &crate::paths::Layout,
    config: &crate::config::InstallerConfig,
    ansible_override: Option<&Path>,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<CheckReport> {
    let plan = crate::plan::builtin::PlanRef::parse(Some(&config.plan))?
        .load(&layout.root.join("plans"))?;
    let config = config.with_derived();
    let choices = plan
        .choose(&config.flags, &config.vars)
        .map_err(crate::error::EngineError::from)?;
    let scratch = Scratch::new(&layout.root, "review");
    let file = scratch.0.join("inventory.yaml");
    std::fs::create_dir_all(&scratch.0)
        .and_then(|()| {
            use crate::state::fsops::FileOps as _;
            crate::state::fsops::RealFs.replace(&file, config.inventory_yaml().as_bytes())
        })
        .map_err(|e| crate::error::EngineError::io("write the inventory to check", &file, e))?;
    let mut report = check_environment(layout, &plan, &choices, Some(file), ansible_override, env)?;
    report.inventory = "the inventory this configuration writes".to_string();
    Ok(report)
}

/// Checks `plan` as `choices` make it. A pinned checkout that is missing, at
/// another commit or changed is an error (as for a deployment), not a problem.
pub fn check(plan: &Plan, choices: &Choices, inputs: &CheckInputs) -> Result<CheckReport> {
    let root = source::root(plan, &choices.vars, inputs.home);
    source::check(plan, &root)?;
    let dir = root.dir().to_path_buf();
    let path = (inputs.env)("PATH");
    let mut problems = Vec::new();
    // (step, playbook's full path, the step's own vars)
    let mut playbooks: Vec<(String, PathBuf, BTreeMap<String, String>)> = Vec::new();
    for (phase, step) in plan.steps() {
        if plan.skip_reason(phase, step, &choices.flags).is_some() {
            continue;
        }
        let action = plan.resolved_action(step, choices)?;
        let (path, vars) = match action {
            Action::Playbook { path, vars } => (path, vars),
            Action::Command { argv, cwd, .. } => {
                problems.extend(command_problem(
                    &step.id,
                    &argv,
                    cwd.as_deref(),
                    &dir,
                    path.as_deref(),
                ));
                continue;
            }
        };
        let full = dir.join(&path);
        if full.is_file() {
            playbooks.push((step.id.clone(), full, vars));
        } else {
            problems.push(CheckProblem {
                step: step.id.clone(),
                file: full.display().to_string(),
                line: None,
                message: format!("playbook {path} does not exist in {}", dir.display()),
            });
        }
    }
    problems.extend(flag_config_problems(
        plan,
        choices,
        &dir,
        inputs.env,
        inputs.to_run,
    ));
    // A plan of commands only (k0rdent-azure) needs no Ansible to be checked.
    if playbooks.is_empty() {
        return Ok(CheckReport {
            plan: plan.id.clone(),
            root: dir.display().to_string(),
            commit: source::inspect(&dir).ok().flatten().map(|s| s.head),
            inventory: "none (no playbook)".to_string(),
            playbooks: 0,
            problems,
        });
    }
    // The inventory's copy beside the checkout's group variables goes to a folder of
    // this process, removed when the check ends: a check runs before a deployment
    // holds the lock, so it must not share a folder with another process.
    let scratch = Scratch::new(inputs.env_root, "check");
    let inventory = match inputs.inventory {
        None => "localhost,".to_string(),
        Some(inv) => match source::inventory_beside(&root, inv, &scratch.0) {
            Some(beside) => {
                beside.write(&crate::state::fsops::RealFs)?;
                beside.to.display().to_string()
            }
            None => inv.display().to_string(),
        },
    };
    let ansible = Ansible {
        playbook: inputs.ansible_playbook,
        root: &root,
        inventory: &inventory,
        home: inputs.home,
    };
    // The inventory first: a broken one is one clear error, not every playbook failing.
    let hostvars = ansible.inventory_vars()?;
    let files: Vec<&Path> = playbooks.iter().map(|(_, p, _)| p.as_path()).collect();
    let listed = match ansible.list_hosts(&files) {
        Ok(listing) => listing,
        Err(_) => {
            // Load each alone to name every one that fails.
            let mut listing = Vec::new();
            for (step, file, _) in &playbooks {
                match ansible.list_hosts(&[file.as_path()]) {
                    Ok(mut l) => listing.append(&mut l),
                    Err(said) => problems.push(ansible_problem(step, file, &said)),
                }
            }
            listing
        }
    };
    for (step, file, step_vars) in &playbooks {
        let plays: Vec<&ListedPlay> = listed.iter().filter(|p| &p.playbook == file).collect();
        if !plays.is_empty() && plays.iter().all(|p| p.hosts == 0) {
            let patterns: Vec<&str> = plays.iter().map(|p| p.pattern.as_str()).collect();
            problems.push(CheckProblem {
                step: step.clone(),
                file: file.display().to_string(),
                line: None,
                message: format!(
                    "no play of it matches a host of the inventory {inventory} (it aims at {}): it would do nothing and count as done; put the hosts in those groups",
                    patterns.join(", ")
                ),
            });
        }
        problems.extend(required_vars(step, file, step_vars, &hostvars));
    }
    Ok(CheckReport {
        plan: plan.id.clone(),
        root: dir.display().to_string(),
        commit: source::inspect(&dir).ok().flatten().map(|s| s.head),
        inventory,
        playbooks: playbooks.len(),
        problems,
    })
}

/// Whether any step that would run is a playbook.
fn has_playbooks(plan: &Plan, choices: &Choices) -> bool {
    plan.steps().any(|(phase, step)| {
        plan.skip_reason(phase, step, &choices.flags).is_none()
            && matches!(
                plan.resolved_action(step, choices),
                Ok(Action::Playbook { .. })
            )
    })
}

/// What is wrong with a command step's program, if anything: it must exist (found
/// in `path` when it names no folder; a relative one from the step's folder) and be
/// executable, or the step would fail at once.
fn command_problem(
    step: &str,
    argv: &[String],
    cwd: Option<&str>,
    plan_dir: &Path,
    path: Option<&std::ffi::OsStr>,
) -> Option<CheckProblem> {
    use std::os::unix::fs::PermissionsExt as _;
    let program = argv.first()?;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let problem = |file: String, message: String| CheckProblem {
        step: step.to_string(),
        file,
        line: None,
        message,
    };
    if !program.contains('/') {
        let found = path
            .map(std::env::split_paths)
            .into_iter()
            .flatten()
            .any(|d| executable(&d.join(program)));
        return (!found).then(|| {
            problem(
                program.clone(),
                format!("the command `{program}` is not installed (not found in PATH)"),
            )
        });
    }
    let base = cwd.map_or_else(|| plan_dir.to_path_buf(), |c| plan_dir.join(c));
    let full = base.join(program);
    let shown = full.display().to_string();
    match std::fs::metadata(&full) {
        Err(_) => Some(problem(
            shown.clone(),
            format!(
                "{shown} does not exist: check the plan's variables (such as the checkout's folder)"
            ),
        )),
        Ok(_) if !executable(&full) => Some(problem(
            shown.clone(),
            format!("{shown} is not an executable file: `chmod +x` it, or fix the plan"),
        )),
        Ok(_) => None,
    }
}

/// Largest configuration file a flag's check reads.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// What is wrong between a flag that is on and the configuration file the plan's
/// programs read the same switch from (a flag's `config:`): the file must exist and
/// say `true` at the key, or those programs refuse to run (k0rdent's KOF scripts
/// with "KOF is not enabled in configuration") after the earlier steps already ran.
/// The file is the one the environment variable `config.env` names when set, as the
/// programs read it. A flag that is off needs nothing: its steps do not run; nor
/// does one whose steps have all run (`to_run` says which steps still would).
pub(crate) fn flag_config_problems(
    plan: &Plan,
    choices: &Choices,
    plan_dir: &Path,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    to_run: &dyn Fn(&str) -> bool,
) -> Vec<CheckProblem> {
    let mut problems = Vec::new();
    for flag in &plan.flags {
        let Some(config) = &flag.config else { continue };
        if choices.flags.get(&flag.name) != Some(&true) {
            continue;
        }
        let gated_by = |c: &Option<crate::plan::Condition>| {
            c.as_ref()
                .is_some_and(|c| c.flag == flag.name && !c.negated)
        };
        let needed = plan.steps().any(|(phase, step)| {
            (gated_by(&phase.when) || gated_by(&step.when))
                && plan.skip_reason(phase, step, &choices.flags).is_none()
                && to_run(&step.id)
        });
        if !needed {
            continue;
        }
        let step = format!("flag {}", flag.name);
        let problem = |file: &Path, message: String| CheckProblem {
            step: step.clone(),
            file: file.display().to_string(),
            line: None,
            message,
        };
        let overridden = config
            .env
            .as_deref()
            .and_then(|name| env(name).filter(|v| !v.is_empty()).map(|v| (name, v)));
        let file = match &overridden {
            Some((_, v)) => PathBuf::from(v),
            None => match crate::plan::substitute(&config.file, &choices.vars) {
                Ok(f) => PathBuf::from(f),
                Err(e) => {
                    problems.push(problem(Path::new(&config.file), e));
                    continue;
                }
            },
        };
        let file = plan_dir.join(file);
        let whence = match &overridden {
            Some((name, _)) => format!(" (named by {name})"),
            None => String::new(),
        };
        let fix = format!(
            "set `{}: true` there, or turn the flag off (--flag {}=false)",
            config.key, flag.name
        );
        let text = match crate::state::fsops::read_regular(&file, MAX_CONFIG_BYTES) {
            Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(None) => {
                problems.push(problem(
                    &file,
                    format!(
                        "the flag `{}` is on, but this file{whence} does not exist, and the plan's programs read `{}` from it (without it they refuse to run the flag's steps): create it with `{}: true`, or turn the flag off (--flag {}=false)",
                        flag.name, config.key, config.key, flag.name
                    ),
                ));
                continue;
            }
            Err(e) => {
                problems.push(problem(
                    &file,
                    format!(
                        "cannot read this file{whence}, which the plan's programs read `{}` from: {e}",
                        config.key
                    ),
                ));
                continue;
            }
        };
        let value = match crate::yaml::from_str_yaml12::<serde_json::Value>(&text) {
            Ok(v) => v,
            Err(e) => {
                problems.push(problem(
                    &file,
                    format!(
                        "this file{whence} is not valid YAML ({}), so the plan's programs cannot read `{}` from it",
                        e.to_string().lines().next().unwrap_or_default(),
                        config.key
                    ),
                ));
                continue;
            }
        };
        let found = config.key.split('.').try_fold(&value, |v, k| v.get(k));
        // Only a boolean: yq prints a quoted "true" or a `yes` as they are written,
        // which the scripts' `== "true"` does not take.
        let on = matches!(found, Some(serde_json::Value::Bool(true)));
        if !on {
            let says = match found {
                None | Some(serde_json::Value::Null) => format!("has no `{}`", config.key),
                Some(v) => format!("says `{}: {v}`", config.key),
            };
            problems.push(problem(
                &file,
                format!(
                    "the flag `{}` is on, but this file{whence} {says}, and the plan's programs refuse to run the flag's steps unless it is true: {fix}",
                    flag.name
                ),
            ));
        }
    }
    problems
}

/// A folder removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    /// `<env>/ansible/<kind>-<pid>-<n>`: this process's own, and this check's own
    /// when a process (the window) runs two at once.
    fn new(env_root: &Path, kind: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Scratch(env_root.join(format!("ansible/{kind}-{}-{n}", std::process::id())))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A play as `--list-hosts` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ListedPlay {
    playbook: PathBuf,
    pattern: String,
    hosts: usize,
}

struct Ansible<'a> {
    playbook: &'a Path,
    root: &'a Root,
    inventory: &'a str,
    home: &'a Path,
}

impl Ansible<'_> {
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.current_dir(self.root.dir())
            .stdin(Stdio::null())
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "false")
            .env("ANSIBLE_LOCALHOST_WARNING", "false")
            .env("ANSIBLE_HOST_KEY_CHECKING", "True")
            .env(
                "ANSIBLE_SSH_COMMON_ARGS",
                crate::facts::host_keys::ssh_common_args(self.home),
            )
            .env_remove("ANSIBLE_STDOUT_CALLBACK");
        let cfg = self.root.dir().join("ansible.cfg");
        if !matches!(self.root, Root::PlanFolder(_)) && cfg.is_file() {
            c.env("ANSIBLE_CONFIG", cfg);
        }
        c
    }

    /// Loads the playbooks as Ansible does (syntax, roles, modules, includes) and
    /// lists each play's hosts; what Ansible said when it could not.
    fn list_hosts(&self, files: &[&Path]) -> std::result::Result<Vec<ListedPlay>, String> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .command(self.playbook)
            .arg("--list-hosts")
            .arg("-i")
            .arg(self.inventory)
            .args(files)
            .output()
            .map_err(|e| format!("could not run {}: {e}", self.playbook.display()))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout));
        }
        Ok(parse_listing(
            &String::from_utf8_lossy(&out.stdout),
            self.root.dir(),
        ))
    }

    /// Every variable name each inventory host has (group variables included), as
    /// `ansible-inventory --list` gives them.
    fn inventory_vars(&self) -> Result<BTreeMap<String, BTreeSet<String>>> {
        let program = self.playbook.with_file_name("ansible-inventory");
        let out = self
            .command(&program)
            .args(["--list", "-i", self.inventory])
            .output()
            .map_err(|e| EngineError::io("run", &program, e))?;
        if !out.status.success() {
            return Err(EngineError::Usage(format!(
                "ansible-inventory could not read the inventory {}: {}",
                self.inventory,
                ansible_error(&String::from_utf8_lossy(&out.stderr)).0
            )));
        }
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            EngineError::Unavailable(format!("ansible-inventory printed no inventory: {e}"))
        })?;
        let mut hosts = BTreeMap::new();
        if let Some(map) = value.pointer("/_meta/hostvars").and_then(|v| v.as_object()) {
            for (host, vars) in map {
                let names = vars
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                hosts.insert(host.clone(), names);
            }
        }
        Ok(hosts)
    }
}

/// The plays of `ansible-playbook --list-hosts` output.
fn parse_listing(text: &str, root: &Path) -> Vec<ListedPlay> {
    let mut out = Vec::new();
    let mut playbook = PathBuf::new();
    let mut pattern = String::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(p) = t.strip_prefix("playbook: ") {
            playbook = root.join(p);
        } else if let Some(rest) = t.strip_prefix("play #") {
            pattern = rest
                .split_once(" (")
                .and_then(|(_, r)| r.split_once("):"))
                .map(|(p, _)| p.to_string())
                .unwrap_or_default();
        } else if let Some(n) = t.strip_prefix("hosts (").and_then(|r| r.strip_suffix("):")) {
            out.push(ListedPlay {
                playbook: playbook.clone(),
                pattern: pattern.clone(),
                hosts: n.parse().unwrap_or(0),
            });
        }
    }
    out
}

/// Ansible's own error line, and the file and line it points at, from its output.
pub(crate) fn ansible_error(said: &str) -> (String, Option<(String, u64)>) {
    let mut message = None;
    let mut at = None;
    for line in said.lines() {
        let t = line.trim();
        if message.is_none()
            && let Some(m) = t
                .strip_prefix("ERROR! ")
                .or_else(|| t.strip_prefix("[ERROR]: "))
        {
            message = Some(m.to_string());
        }
        if at.is_none()
            && let Some(rest) = t.strip_prefix("The error appears to be in '")
            && let Some((file, tail)) = rest.split_once("': line ")
        {
            let n = tail
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse().ok());
            at = n.map(|n| (file.to_string(), n));
        }
    }
    let message = message.unwrap_or_else(|| {
        said.lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("[WARNING]"))
            .unwrap_or("ansible-playbook failed and printed nothing")
            .to_string()
    });
    (message, at)
}

fn ansible_problem(step: &str, file: &Path, said: &str) -> CheckProblem {
    let (message, at) = ansible_error(said);
    let (file, line) = match at {
        Some((f, n)) => (f, Some(n)),
        None => (file.display().to_string(), None),
    };
    CheckProblem {
        step: step.to_string(),
        file,
        line,
        message: format!("Ansible cannot load it: {message}"),
    }
}

/// Names Ansible gives every play whatever the inventory says.
const MAGIC: &[&str] = &[
    "inventory_hostname",
    "inventory_hostname_short",
    "groups",
    "group_names",
    "hostvars",
    "ansible_play_hosts",
    "playbook_dir",
    "ansible_check_mode",
];

/// The variables `file` requires that nothing gives.
fn required_vars(
    step: &str,
    file: &Path,
    step_vars: &BTreeMap<String, String>,
    hostvars: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<CheckProblem> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    let Ok(plays) = crate::yaml::from_str::<serde_json::Value>(&text) else {
        return Vec::new(); // Ansible has named what is wrong with it already.
    };
    let known: BTreeSet<&str> = hostvars
        .values()
        .flatten()
        .map(String::as_str)
        .chain(step_vars.keys().map(String::as_str))
        .chain(MAGIC.iter().copied())
        .collect();
    let mut problems = Vec::new();
    for play in plays.as_array().into_iter().flatten() {
        let play_vars: BTreeSet<&str> = play
            .get("vars")
            .and_then(|v| v.as_object())
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let given = |name: &str| known.contains(name) || play_vars.contains(name);
        let mut required: Vec<(String, &'static str)> = Vec::new();
        for task in ["pre_tasks", "tasks"]
            .iter()
            .filter_map(|k| play.get(*k))
            .filter_map(|t| t.as_array())
            .flatten()
        {
            let named = task
                .get("name")
                .and_then(|n| n.as_str())
                .is_some_and(|n| n.to_ascii_lowercase().contains("verify required variables"));
            let assert = task
                .get("ansible.builtin.assert")
                .or_else(|| task.get("assert"));
            if let (true, Some(assert)) = (named, assert) {
                let that: Vec<&str> = match assert.get("that") {
                    Some(serde_json::Value::String(s)) => vec![s.as_str()],
                    Some(serde_json::Value::Array(a)) => {
                        a.iter().filter_map(|v| v.as_str()).collect()
                    }
                    _ => Vec::new(),
                };
                for condition in that {
                    for name in defined_names(condition) {
                        required.push((name, "its \"Verify required variables\" assert"));
                    }
                }
            }
        }
        for prompt in play
            .get("vars_prompt")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            if prompt.get("default").is_none()
                && let Some(name) = prompt.get("name").and_then(|n| n.as_str())
            {
                required.push((name.to_string(), "its vars_prompt (a run cannot answer it)"));
            }
        }
        let mut seen = BTreeSet::new();
        for (name, why) in required {
            if given(&name) || !seen.insert(name.clone()) {
                continue;
            }
            problems.push(CheckProblem {
                step: step.to_string(),
                file: file.display().to_string(),
                line: line_of(&text, &name),
                message: format!(
                    "it requires `{name}` ({why}) and nothing gives it: set it in the inventory (all: vars:) or in the step's `vars:`"
                ),
            });
        }
    }
    problems
}

/// `X` of every `X is defined` in a condition.
fn defined_names(condition: &str) -> Vec<String> {
    let words: Vec<&str> = condition.split_whitespace().collect();
    let mut out = Vec::new();
    for w in words.windows(3) {
        if w[1] == "is" && w[2].trim_end_matches(')') == "defined" {
            let name = w[0].trim_start_matches(['(', '!']);
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// The first line (1-based) that mentions `name is defined`, else `name`.
fn line_of(text: &str, name: &str) -> Option<u64> {
    let needle = format!("{name} is defined");
    text.lines()
        .position(|l| l.contains(&needle))
        .or_else(|| text.lines().position(|l| l.contains(name)))
        .map(|i| i as u64 + 1)
}

/// The human view of `plan check`.
pub(crate) fn render(r: &CheckReport) -> String {
    let mut out = format!(
        "Plan {}: {} playbook{} in {}{}\nInventory: {}\n",
        r.plan,
        r.playbooks,
        if r.playbooks == 1 { "" } else { "s" },
        r.root,
        r.commit
            .as_deref()
            .map(|c| format!(" (commit {c})"))
            .unwrap_or_default(),
        r.inventory
    );
    if r.problems.is_empty() {
        out.push_str("Every playbook exists, loads in Ansible, matches hosts and has the variables it requires.\n");
    }
    for p in &r.problems {
        out.push_str(&format!("  ✗ {p}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defined_names_come_from_is_defined_tests() {
        assert_eq!(
            defined_names("domain_name is defined and domain_name | length > 0"),
            ["domain_name"]
        );
        assert_eq!(
            defined_names("(a is defined) and (b is defined)"),
            ["a", "b"]
        );
        assert!(defined_names("x | length > 0").is_empty());
    }

    #[test]
    fn ansible_errors_are_read_in_both_styles() {
        let old = "ERROR! couldn't resolve module/action 'nosuch.module.here'\n\nThe error appears to be in '/c/t.yaml': line 3, column 7, but may\n";
        assert_eq!(
            ansible_error(old),
            (
                "couldn't resolve module/action 'nosuch.module.here'".into(),
                Some(("/c/t.yaml".into(), 3))
            )
        );
        let new = "[WARNING]: x\n[ERROR]: the playbook: a.yaml could not be found\n";
        assert_eq!(
            ansible_error(new).0,
            "the playbook: a.yaml could not be found"
        );
    }

    #[test]
    fn the_listing_gives_each_play_its_host_count() {
        let text = "\nplaybook: a.yaml\n\n  play #1 (k8s_control_plane): Name\tTAGS: []\n    pattern: ['k8s_control_plane']\n    hosts (0):\n\n  play #2 (all): Other\tTAGS: []\n    pattern: ['all']\n    hosts (2):\n      a\n      b\n";
        let plays = parse_listing(text, Path::new("/r"));
        assert_eq!(
            plays,
            [
                ListedPlay {
                    playbook: "/r/a.yaml".into(),
                    pattern: "k8s_control_plane".into(),
                    hosts: 0
                },
                ListedPlay {
                    playbook: "/r/a.yaml".into(),
                    pattern: "all".into(),
                    hosts: 2
                }
            ]
        );
    }
}
