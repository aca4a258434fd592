//! The headless command line, `thinkube-deploy`: flags parsed and validated into
//! arguments, one engine call per subcommand, and the contract's exit codes.
//! The desktop app runs the same `run` when given a subcommand.

use std::io::{self, BufRead, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::error::{EngineError, Result, exit};
use crate::paths::{EnvName, Layout, installer_home_from_process};
use crate::report::history;
use crate::report::status;
use crate::run::deploy;
use crate::state::lock::{Identity, LockWait};
use crate::state::model::{Event, RunKind};
use crate::state::ops::{self, RecoverSource};
use crate::state::shared::Shared;
use crate::state::store::Store;
use crate::timestamp::Timestamp;

/// Name and version, as recorded in lock info and runs.
pub const PROGRAM: &str = concat!("thinkube-deploy ", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Parser)]
#[command(
    name = "thinkube-deploy",
    version,
    about = "Deploys Thinkube, phase by phase, and keeps every step's outcome.",
    long_about = "Deploys Thinkube, phase by phase, and keeps every step's outcome.\n\nState lives in $THINKUBE_INSTALLER_HOME (default ~/.thinkube-installer).\nExit codes: 0 ok, 1 failed, 2 bad input, 3 locked, 4 unreadable state, 5 gate blocked, 130 stopped."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Environment: letters, digits, `-` and `_` (default: the default environment)
    #[arg(long, global = true, value_name = "NAME")]
    pub env: Option<String>,
    /// Wait up to SECONDS for another process's lock instead of exiting with 3
    #[arg(long, global = true, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(0..=MAX_LOCK_TIMEOUT_SECONDS))]
    pub lock_timeout: Option<u64>,
    /// Where the state and lock live: `file` (this home, the default) or
    /// azblob://ACCOUNT/CONTAINER[/PREFIX][?endpoint=URL] (docs/shared-state.md)
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "THINKUBE_STATE_BACKEND"
    )]
    pub backend: Option<String>,
}

/// Longest `--lock-timeout`: a week.
const MAX_LOCK_TIMEOUT_SECONDS: u64 = 7 * 24 * 3600;

/// `--flag NAME=true|false`.
fn parse_flag(text: &str) -> std::result::Result<(String, bool), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=true|false"))?;
    let value = match value {
        "true" | "yes" | "on" | "1" => true,
        "false" | "no" | "off" | "0" => false,
        other => return Err(format!("`{other}` is not true or false")),
    };
    Ok((name.to_string(), value))
}

/// `--var KEY=VALUE`.
fn parse_var(text: &str) -> std::result::Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("`{text}` has no KEY"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// `configure`: the wizard's answers from the command line.
#[derive(Debug, Args, Clone, Default)]
pub struct ConfigureArgs {
    /// Print the saved configuration and where its inventory is; change nothing
    #[arg(long)]
    pub show: bool,
    /// Where to deploy
    #[arg(long, value_enum)]
    pub target: Option<TargetArg>,
    /// A server: NAME=ADDRESS[:PORT] ([IPv6]:PORT); repeat for each (replaces the list)
    #[arg(long = "host", value_name = "NAME=ADDRESS[:PORT]", value_parser = parse_host)]
    pub hosts: Vec<crate::config::Host>,
    #[arg(long, value_name = "USER")]
    pub ssh_user: Option<String>,
    #[arg(long, value_enum)]
    pub ssh_auth: Option<SshAuthArg>,
    /// The private key for --ssh-auth key
    #[arg(long, value_name = "PATH")]
    pub ssh_key: Option<PathBuf>,
    /// A host's part in the cluster: NAME=control|worker
    #[arg(long = "role", value_name = "NAME=control|worker", value_parser = parse_role)]
    pub roles: Vec<(String, crate::config::Role)>,
    /// A built-in plan's name or a plan file
    #[arg(long, value_name = "PATH|NAME")]
    pub plan: Option<String>,
    /// Turn a plan flag on or off (kept; `deploy` uses it unless given another)
    #[arg(long = "flag", value_name = "NAME=true|false", value_parser = parse_flag)]
    pub flags: Vec<(String, bool)>,
    /// Set a plan variable (kept; secret-looking names are refused: give them per run)
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// thinkube: the platform's domain name
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// thinkube: the servers' network, e.g. 192.168.1.0/24
    #[arg(long, value_name = "CIDR")]
    pub network_cidr: Option<String>,
    /// thinkube: the network's gateway
    #[arg(long, value_name = "IP")]
    pub gateway: Option<String>,
    /// thinkube: the overlay network
    #[arg(long, value_enum)]
    pub overlay: Option<OverlayArg>,
    /// thinkube, ZeroTier: the network id (16 hexadecimal digits)
    #[arg(long, value_name = "ID")]
    pub zerotier_network_id: Option<String>,
    /// thinkube, ZeroTier: the overlay's range, e.g. 192.168.191.0/24
    #[arg(long, value_name = "CIDR")]
    pub overlay_cidr: Option<String>,
    /// thinkube, ZeroTier: a host's overlay address, NAME=IP
    #[arg(long = "overlay-ip", value_name = "NAME=IP", value_parser = parse_var)]
    pub overlay_ips: Vec<(String, String)>,
    /// thinkube: the user thinkube runs as on the servers (default: the SSH user)
    #[arg(long, value_name = "USER")]
    pub system_user: Option<String>,
    /// thinkube: the address Let's Encrypt writes to (default admin@DOMAIN)
    #[arg(long, value_name = "EMAIL")]
    pub admin_email: Option<String>,
    /// thinkube: the GitHub organisation
    #[arg(long, value_name = "ORG")]
    pub github_org: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TargetArg {
    Local,
    Ssh,
    Azure,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SshAuthArg {
    Key,
    Agent,
    Password,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OverlayArg {
    Zerotier,
    Tailscale,
}

/// NAME=ADDRESS[:PORT], with `[v6]:PORT` for an IPv6 address and a port.
fn parse_host(text: &str) -> std::result::Result<crate::config::Host, String> {
    let (name, rest) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=ADDRESS[:PORT]"))?;
    let bad_port = |p: &str| format!("`{p}` in `{text}` is not a port (1-65535)");
    let port = |p: &str| -> std::result::Result<u16, String> {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad_port(p))
    };
    let (address, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{text}`: `[` without `]`"))?;
        match after.strip_prefix(':') {
            Some(p) => (addr.to_string(), Some(port(p)?)),
            None if after.is_empty() => (addr.to_string(), None),
            None => return Err(format!("`{text}` is not NAME=[ADDRESS]:PORT")),
        }
    } else {
        match rest.matches(':').count() {
            1 => {
                let (a, p) = rest.split_once(':').unwrap_or((rest, ""));
                (a.to_string(), Some(port(p)?))
            }
            _ => (rest.to_string(), None), // none, or a bare IPv6 address
        }
    };
    Ok(crate::config::Host {
        name: name.to_string(),
        address,
        port,
        role: None,
        overlay_ip: None,
        arch: None,
    })
}

fn parse_role(text: &str) -> std::result::Result<(String, crate::config::Role), String> {
    let (name, role) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=control|worker"))?;
    let role = match role {
        "control" | "control_plane" | "control-plane" => crate::config::Role::Control,
        "worker" => crate::config::Role::Worker,
        other => return Err(format!("`{other}` is not a role: control or worker")),
    };
    Ok((name.to_string(), role))
}

/// What a run takes from the command line.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Plan file or built-in plan name (default: demo; resume and retry: the deployment's)
    #[arg(long, value_name = "PATH|NAME")]
    pub plan: Option<String>,
    /// Ansible inventory (default: <home>/inventory.yaml, else localhost)
    #[arg(long, value_name = "PATH")]
    pub inventory: Option<PathBuf>,
    /// Turn a plan flag on or off
    #[arg(long = "flag", value_name = "NAME=true|false", value_parser = parse_flag)]
    pub flags: Vec<(String, bool)>,
    /// Set a plan variable
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Print progress as JSON, one event per line
    #[arg(long)]
    pub json: bool,
    /// Go on without the hosts' pre-flight (answers, login, sudo); host keys are
    /// checked all the same
    #[arg(long)]
    pub skip_checks: bool,
}

#[derive(Debug, Subcommand)]
pub enum BackendCommand {
    /// Where the environment's state lives (this home, or --backend), with the
    /// lineage and serial of each side and who holds the shared lock
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Upload this home's state, runs and events to the shared backend URL (refused
    /// when it holds another deployment, or a newer state of this one)
    Push { url: String },
    /// Take the shared backend's (--backend) state and runs into this home (refused
    /// when this home holds another deployment)
    Pull,
}

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// Pre-flight: each host answers, its key is trusted, the login works, and sudo
    /// works for a user other than root (exit 2 naming each failure)
    Check {
        #[arg(long)]
        json: bool,
    },
    /// Show each host's key fingerprint and record it as trusted after confirmation
    Trust {
        /// Hosts to trust (default: every host whose key is not trusted yet)
        hosts: Vec<String>,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
    },
}

/// A plan and its flags and variables, as `plan show` and `plan check` take them.
#[derive(Debug, Args, Clone)]
pub struct PlanChoice {
    #[arg(long, value_name = "PATH|NAME")]
    plan: Option<String>,
    #[arg(long = "flag", value_name = "NAME=true|false", value_parser = parse_flag)]
    flags: Vec<(String, bool)>,
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
}

impl PlanChoice {
    /// The plan, loaded and validated, with these choices.
    fn load(self, store: &Store) -> Result<(crate::plan::Plan, crate::plan::Choices)> {
        let plan_ref = crate::plan::builtin::PlanRef::parse(self.plan.as_deref())?;
        let plan = plan_ref.load(&store.layout().root.join("plans"))?;
        let choices = plan.choose(
            &self.flags.into_iter().collect(),
            &self.vars.into_iter().collect(),
        )?;
        Ok((plan, choices))
    }
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Phases and steps, each marked applicable or not and why
    Show {
        #[command(flatten)]
        choice: PlanChoice,
        #[arg(long)]
        json: bool,
    },
    /// Whether the plan can run as chosen: every playbook exists and loads in Ansible
    /// with the checkout's configuration and the inventory, every play matches a host,
    /// and every variable a playbook requires has a value (exit 2 listing each problem)
    Check {
        #[command(flatten)]
        choice: PlanChoice,
        /// The inventory (default: <home>/inventory.yaml, else localhost)
        #[arg(long, value_name = "PATH")]
        inventory: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a deployment, or resume the unfinished one
    Deploy {
        #[command(flatten)]
        run: RunArgs,
        /// Answer yes to questions (deploy asks none today)
        #[arg(long)]
        yes: bool,
    },
    /// Continue an unfinished deployment
    Resume {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run the failed steps (or the named ones) again, then continue
    Retry {
        /// Steps to run again (default: the failed ones)
        steps: Vec<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Ask a running deployment in another process to stop
    Cancel,
    /// Install the pinned ansible-core into the installer's own environment (<home>/venv)
    Setup {
        /// The Python to create the environment with
        #[arg(long, default_value = "python3")]
        python: String,
    },
    /// Write the configuration the desktop wizard writes (installer-config.json and
    /// the inventory) from flags, with the same checks; --show prints it
    Configure(Box<ConfigureArgs>),
    /// Put the checkout a plan's playbooks come from at <home>/sources/NAME, at the
    /// commit the plan pins (cloned from its repository, or from a local clone,
    /// mirror or bundle with --from)
    Source {
        /// The plan whose upstream to check out (default: thinkube)
        #[arg(long, value_name = "PATH|NAME", default_value = "thinkube")]
        plan: String,
        /// Clone or fetch from here instead of the plan's repository
        #[arg(long, value_name = "PATH|URL")]
        from: Option<String>,
        /// Another commit than the plan's pin (deployments then name the difference)
        #[arg(long, value_name = "COMMIT")]
        commit: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show a plan
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Show the current deployment (local files only; never waits for a lock)
    Status {
        #[arg(long)]
        json: bool,
    },
    /// List past and current runs
    History {
        #[arg(long)]
        json: bool,
    },
    /// Show one run: configuration, steps attempted, errors, timings
    ShowRun {
        run_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Show what differs between two runs
    DiffRuns {
        run_a: String,
        run_b: String,
        #[arg(long)]
        json: bool,
    },
    /// Print the audit trail, oldest first
    Events {
        /// Only events of this run
        #[arg(long, value_name = "RUN_ID")]
        run: Option<String>,
        /// Keep printing new events as they are written
        #[arg(long)]
        follow: bool,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Convert an older state format now, or import another tool's state file
    Migrate {
        /// Show what would change; write nothing
        #[arg(long)]
        dry_run: bool,
        /// Import this file (k0rdent-azure-setup deployment-state.yaml, or the earlier installer's JSON)
        #[arg(long, value_name = "PATH")]
        from: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Replace an unreadable state with its last good copy (the bad file is moved aside)
    #[command(group(clap::ArgGroup::new("source").required(true).args(["from_backup", "from"])))]
    Recover {
        /// Use the backup kept at the last change
        #[arg(long)]
        from_backup: bool,
        /// Use this state file
        #[arg(long, value_name = "PATH")]
        from: Option<PathBuf>,
    },
    /// Archive the current deployment's progress into history and clear it
    CleanState {
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
    },
    /// Archive finished runs older than DAYS out of history
    Cleanup {
        #[arg(long, value_name = "DAYS", default_value_t = 90)]
        older_than: u32,
    },
    /// Where the state lives; move it between this home and a shared backend
    #[command(subcommand)]
    Backend(BackendCommand),
    /// The inventory's SSH hosts: address, whether each answers, its host key's
    /// fingerprint and whether that key is trusted
    Hosts {
        #[command(subcommand)]
        action: Option<HostsCommand>,
        /// The inventory (default: the deployment's, else <home>/inventory.yaml)
        #[arg(long, value_name = "PATH", global = true)]
        inventory: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Compare the recorded state with reality; list every mismatch (exit 1 when any)
    Validate {
        /// Mark the earliest affected step and every later one pending
        #[arg(long)]
        reset_affected: bool,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// Cached infrastructure facts with their age; --refresh asks their sources
    Facts {
        /// Ask every configured source now (Terraform state, SSH ports of the hosts)
        #[arg(long)]
        refresh: bool,
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    /// Whether the command changes files (and so logs to the environment's log).
    fn writes(&self) -> bool {
        match self {
            Command::Status { .. }
            | Command::History { .. }
            | Command::ShowRun { .. }
            | Command::DiffRuns { .. }
            | Command::Events { .. } => false,
            Command::Migrate { dry_run, .. } => !dry_run,
            Command::Plan(_) | Command::Cancel => false,
            Command::Setup { .. } | Command::Source { .. } => true,
            Command::Configure(a) => !a.show,
            Command::Deploy { .. } | Command::Resume { .. } | Command::Retry { .. } => true,
            Command::Recover { .. } | Command::CleanState { .. } | Command::Cleanup { .. } => true,
            Command::Facts { refresh, .. } => *refresh,
            Command::Validate { reset_affected, .. } => *reset_affected,
            Command::Hosts { .. } => false,
            Command::Backend(BackendCommand::Show { .. }) => false,
            Command::Backend(_) => true,
        }
    }
}

/// Entry point of the `thinkube-deploy` binary.
pub fn main() -> ExitCode {
    // From the first moment: a SIGTERM while the command line is parsed still
    // ends a deployment as stopped (130), not killed (143).
    signals::listen();
    let cli = Cli::parse();
    ExitCode::from(run_and_report(cli))
}

/// SIGINT and SIGTERM. Until the command is known they are only noted; a run
/// (deploy, resume, retry) then treats them as "stop" (the step is stopped and
/// recorded interrupted, exit 130); any other command ends at once as the signal's
/// default action would.
mod signals {
    use std::sync::Once;
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

    const UNDECIDED: u8 = 0;
    const RUN: u8 = 1;
    const OTHER: u8 = 2;

    static STOP: AtomicBool = AtomicBool::new(false);
    static MODE: AtomicU8 = AtomicU8::new(UNDECIDED);
    static LAST: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
    static INSTALL: Once = Once::new();

    pub(super) fn listen() {
        INSTALL.call_once(|| {
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                // SAFETY: the handler only touches atomics and, for a command that
                // is not a run, emulates the default action; both are
                // async-signal-safe.
                let _ = unsafe {
                    signal_hook::low_level::register(signal, move || {
                        STOP.store(true, Ordering::SeqCst);
                        LAST.store(signal, Ordering::SeqCst);
                        if MODE.load(Ordering::SeqCst) == OTHER {
                            let _ = signal_hook::low_level::emulate_default_handler(signal);
                        }
                    })
                };
            }
        });
    }

    /// Whether a signal asked this process to stop.
    pub(super) fn requested() -> bool {
        STOP.load(Ordering::SeqCst)
    }

    /// This command is a run: signals ask it to stop. Returns the flag.
    pub(super) fn for_a_run() -> &'static AtomicBool {
        listen();
        MODE.store(RUN, Ordering::SeqCst);
        &STOP
    }

    /// This command is not a run: a signal noted so far ends it now, later ones at
    /// once.
    pub(super) fn for_other() {
        MODE.store(OTHER, Ordering::SeqCst);
        let last = LAST.load(Ordering::SeqCst);
        if STOP.load(Ordering::SeqCst) && last != 0 {
            let _ = signal_hook::low_level::emulate_default_handler(last);
            std::process::exit(128 + last);
        }
    }
}

/// Runs a parsed command line and prints an error as one line with its causes.
pub fn run_and_report(cli: Cli) -> u8 {
    // An error may quote a value built from a secret (a playbook path made of a
    // `--var`): it is masked before the terminal and the log see it.
    let hide = secrets_of(&cli);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let mut line = format!("thinkube-deploy: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                let text = cause.to_string();
                if !line.contains(&text) {
                    line.push_str(": ");
                    line.push_str(&text);
                }
                source = cause.source();
            }
            let line = hide.apply(line);
            tracing::error!("{line}");
            eprintln!("{line}");
            e.exit_code()
        }
    }
}

/// The secret values this command line and this process's environment carry: the
/// secret-named `--var`s and environment variables.
fn secrets_of(cli: &Cli) -> crate::secrets::Redactor {
    let vars: &[(String, String)] = match &cli.command {
        Command::Deploy { run, .. } | Command::Resume { run } | Command::Retry { run, .. } => {
            &run.vars
        }
        Command::Plan(PlanCommand::Show { choice, .. } | PlanCommand::Check { choice, .. }) => {
            &choice.vars
        }
        _ => &[],
    };
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    crate::secrets::Redactor::new(
        crate::secrets::secret_named(vars.iter().map(|(k, v)| (k, v))).chain(
            crate::secrets::secret_named(env.iter().map(|(k, v)| (k, v))),
        ),
    )
}

/// Runs a command; returns its exit code.
pub fn run(cli: Cli) -> Result<u8> {
    match &cli.command {
        Command::Deploy { .. } | Command::Resume { .. } | Command::Retry { .. } => {}
        _ => signals::for_other(),
    }
    let (store, wait) = open_store(&cli.global, cli.command.writes())?;
    let now = Timestamp::now();
    match cli.command {
        Command::Deploy { run, yes: _ } => {
            run_deployment(&store, RunKind::Deploy, Vec::new(), run, wait)
        }
        Command::Resume { run } => run_deployment(&store, RunKind::Resume, Vec::new(), run, wait),
        Command::Retry { steps, run } => run_deployment(&store, RunKind::Retry, steps, run, wait),
        Command::Cancel => cancel(&store),
        Command::Setup { python } => setup(&store, &python),
        Command::Plan(PlanCommand::Show { choice, json }) => {
            let (plan, choices) = choice.load(&store)?;
            let view = crate::plan::outline::outline(&plan, &choices);
            show(json, &view, crate::plan::outline::render)
        }
        Command::Plan(PlanCommand::Check {
            choice,
            inventory,
            json,
        }) => plan_check(&store, choice, inventory, json),
        Command::Configure(args) => configure(&store, *args, now),
        Command::Source {
            plan,
            from,
            commit,
            json,
        } => {
            let plan_ref = crate::plan::builtin::PlanRef::parse(Some(&plan))?;
            let plan = plan_ref.load(&store.layout().root.join("plans"))?;
            let fetched = crate::run::source::fetch(
                &store.layout().home,
                &plan,
                from.as_deref(),
                commit.as_deref(),
            )?;
            show(json, &fetched, render_fetched)
        }
        Command::Status { json } => {
            let view = match store.shared() {
                Some(_) => status::shared(&store, now)?.0,
                None => {
                    let loaded = store.load(now)?;
                    let holder = store.lock_holder();
                    status::view(store.layout(), loaded.as_ref(), holder.as_ref(), now)
                }
            };
            show(json, &view, status::render)
        }
        Command::History { json } => {
            let runs = all_runs(&store, now)?;
            if json {
                emit_json(&history::rows(&runs));
            } else {
                emit(&history::render_history(&runs));
            }
            Ok(exit::SUCCESS)
        }
        Command::ShowRun { run_id, json } => show(
            json,
            &history::find_run(&store, &run_id, now)?,
            history::render_run,
        ),
        Command::DiffRuns { run_a, run_b, json } => {
            let a = history::find_run(&store, &run_a, now)?;
            let b = history::find_run(&store, &run_b, now)?;
            show(json, &history::diff(&a, &b), history::render_diff)
        }
        Command::Events { run, follow, json } => {
            print_events(&store, run.as_deref(), follow, json)?;
            Ok(exit::SUCCESS)
        }
        Command::Migrate {
            dry_run,
            from,
            json,
        } => {
            let report = match from {
                Some(path) => ops::import(&store, &path, dry_run, wait, now)?,
                None => ops::migrate_in_place(&store, dry_run, wait, now)?,
            };
            show(json, &report, render_migration)
        }
        Command::Recover { from_backup, from } => {
            let source = match (from_backup, from) {
                (_, Some(path)) => RecoverSource::File(path),
                _ => RecoverSource::Backup,
            };
            emit(&render_recovery(&ops::recover(&store, source, wait, now)?));
            Ok(exit::SUCCESS)
        }
        Command::Validate {
            reset_affected,
            yes,
            json,
        } => validate(&store, reset_affected, yes, json, wait, now),
        Command::Facts { refresh, json } => facts(&store, refresh, json, wait, now),
        Command::Backend(BackendCommand::Show { json }) => backend_show(&store, json, now),
        Command::Backend(BackendCommand::Push { url }) => backend_push(&store, &url, wait, now),
        Command::Backend(BackendCommand::Pull) => backend_pull(&store, wait, now),
        Command::Hosts {
            action,
            inventory,
            json,
        } => hosts(&store, action, inventory, json, now),
        Command::CleanState { yes } => clean_state(&store, yes, wait, now),
        Command::Cleanup { older_than } => {
            let r = ops::cleanup(&store, older_than, wait, now)?;
            emit(&render_cleanup(&r, older_than));
            Ok(exit::SUCCESS)
        }
    }
}

/// Lineage, serial and status of a state, for `backend show`.
fn state_summary(loaded: Option<&crate::state::store::Loaded>) -> serde_json::Value {
    loaded.map_or(serde_json::Value::Null, |l| {
        serde_json::json!({
            "lineage": l.state.lineage,
            "serial": l.state.serial,
            "status": l.state.deployment.status.as_str(),
        })
    })
}

/// `backend show`: where the state lives, and what each side holds.
fn backend_show(store: &Store, json: bool, now: Timestamp) -> Result<u8> {
    let local = store.load_local(now)?;
    let mut value = serde_json::json!({
        "backend": store.shared().map_or("file", |s| s.url()),
        "state_file": store.layout().state_file().display().to_string(),
        "local": state_summary(local.as_ref()),
        "shared": null,
    });
    if let Some(shared) = store.shared() {
        let theirs = store
            .load(now)?
            .filter(|_| shared.read_state().is_ok_and(|s| s.is_some()));
        let holder = shared.holder()?;
        let mut s = state_summary(theirs.as_ref());
        if s.is_null() {
            s = serde_json::json!({});
        }
        s["holder"] = holder.map_or(serde_json::Value::Null, |h| {
            serde_json::to_value(&h.holder).unwrap_or_default()
        });
        value["shared"] = s;
    }
    if json {
        emit_json(&value);
        return Ok(exit::SUCCESS);
    }
    let side = |v: &serde_json::Value| {
        if v.get("lineage").is_none_or(|l| l.is_null()) {
            "no state".to_string()
        } else {
            format!(
                "lineage {}, serial {}, {}",
                v["lineage"].as_str().unwrap_or(""),
                v["serial"],
                v["status"].as_str().unwrap_or("")
            )
        }
    };
    let mut text = format!("Backend: {}\n", value["backend"].as_str().unwrap_or("file"));
    text.push_str(&format!(
        "This home: {} ({})\n",
        side(&value["local"]),
        value["state_file"].as_str().unwrap_or("")
    ));
    if !value["shared"].is_null() {
        text.push_str(&format!("Shared: {}\n", side(&value["shared"])));
        if let Some(h) = value["shared"]["holder"].as_object() {
            text.push_str(&format!(
                "Shared lock: held by pid {} on {} ({})\n",
                h["pid"],
                h["host"].as_str().unwrap_or(""),
                h["operation"].as_str().unwrap_or("")
            ));
        }
    }
    emit(&text);
    Ok(exit::SUCCESS)
}

/// `backend push URL`: this home's state, runs and events to the shared backend.
fn backend_push(store: &Store, url: &str, wait: LockWait, now: Timestamp) -> Result<u8> {
    let shared = Shared::parse(url, &store.layout().env, &|name| std::env::var(name).ok())?
        .ok_or_else(|| {
            EngineError::Usage(
                "`backend push` needs a shared backend URL (azblob://…), not `file`".into(),
            )
        })?;
    let ours = store.load_local(now)?.ok_or_else(|| {
        EngineError::Usage(format!(
            "there is no state in {} to push",
            store.layout().state_file().display()
        ))
    })?;
    if let Some((bytes, _)) = shared.read_state()? {
        let theirs =
            crate::state::store::parse_state(&bytes, Path::new(url), now, uuid::Uuid::new_v4())?;
        if theirs.state.lineage != ours.state.lineage {
            return Err(EngineError::Usage(format!(
                "{url} holds another deployment (lineage {}) than this home (lineage {}): nothing was pushed",
                theirs.state.lineage, ours.state.lineage
            )));
        }
        if theirs.state.serial > ours.state.serial {
            return Err(EngineError::Usage(format!(
                "{url} holds a newer state of this deployment (serial {}, this home's {}): nothing was pushed; run `thinkube-deploy --backend {url} backend pull` to take it",
                theirs.state.serial, ours.state.serial
            )));
        }
    }
    let target = store.clone().with_shared(Some(shared));
    let writer = target.open_writer("backend push", wait, now)?;
    let runs = writer.copy_runs(true)?;
    let (lineage, serial) = (writer.state().lineage, writer.state().serial);
    writer.finish()?;
    emit(&format!(
        "Pushed to {url}: lineage {lineage}, serial {serial}, {runs} run(s) copied. Use --backend {url} (or THINKUBE_STATE_BACKEND) from now on.\n"
    ));
    Ok(exit::SUCCESS)
}

/// `backend pull`: the shared backend's state and runs into this home.
fn backend_pull(store: &Store, wait: LockWait, now: Timestamp) -> Result<u8> {
    let shared = store.shared().ok_or_else(|| {
        EngineError::Usage("`backend pull` takes from the shared backend: give --backend URL or set THINKUBE_STATE_BACKEND".into())
    })?;
    let url = shared.url().to_string();
    if shared.read_state()?.is_none() {
        return Err(EngineError::Usage(format!("{url} holds no state to pull")));
    }
    let writer = store.open_writer("backend pull", wait, now)?;
    let runs = writer.copy_runs(false)?;
    let (lineage, serial) = (writer.state().lineage, writer.state().serial);
    writer.finish()?;
    emit(&format!(
        "Pulled from {url} into {}: lineage {lineage}, serial {serial}, {runs} run(s) copied.\n",
        store.layout().state_file().display()
    ));
    Ok(exit::SUCCESS)
}

/// The environment's store, with the lock wait `--lock-timeout` asks for (saying so
/// while it waits), and logging set up for it.
fn open_store(global: &GlobalArgs, writes: bool) -> Result<(Store, LockWait)> {
    let env = match &global.env {
        Some(name) => EnvName::parse(name)?,
        None => EnvName::default_env(),
    };
    let layout = Layout::new(installer_home_from_process()?, env);
    init_logging(&layout, writes);
    let wait = match global.lock_timeout {
        None | Some(0) => LockWait::NoWait,
        Some(s) => LockWait::Timeout(Duration::from_secs(s)),
    };
    let shared = match &global.backend {
        Some(url) => Shared::parse(url, &layout.env, &|name| std::env::var(name).ok())?,
        None => None,
    };
    let store = Store::new(layout, Identity::new(PROGRAM))
        .with_shared(shared)
        .with_lock_wait_notice(std::sync::Arc::new(move |holder| {
            let who = holder.map_or("another process".to_string(), |h| {
                format!("pid {} ({}, since {})", h.pid, h.operation, h.since)
            });
            eprintln!("thinkube-deploy: waiting for the lock held by {who}");
        }))
        .with_stop_requested(std::sync::Arc::new(signals::requested));
    Ok((store, wait))
}

/// Prints `value` as JSON with `--json`, else as `render` writes it for a person.
fn show<T: serde::Serialize>(
    json: bool,
    value: &T,
    render: impl FnOnce(&T) -> String,
) -> Result<u8> {
    if json {
        emit_json(value);
    } else {
        emit(&render(value));
    }
    Ok(exit::SUCCESS)
}

/// `configure`: the saved configuration changed by the flags given, checked and
/// saved as the wizard saves it; `--show` prints it.
fn configure(store: &Store, a: ConfigureArgs, now: Timestamp) -> Result<u8> {
    let layout = store.layout();
    let current = crate::config::load(layout)?;
    if a.show {
        return configure_show(layout, current, a.json);
    }
    let json = a.json;
    let mut cfg = current.unwrap_or_default();
    apply_configure_args(&mut cfg, a)?;
    // Flags and variables the plan does not declare are refused now, not at deploy.
    if !cfg.plan.trim().is_empty() {
        let plan = crate::plan::builtin::PlanRef::parse(Some(&cfg.plan))?
            .load(&layout.root.join("plans"))?;
        plan.choose(&cfg.flags, &cfg.vars)
            .map_err(|e| EngineError::Usage(format!("{e}; the configuration was not saved")))?;
    }
    crate::config::save(store, &cfg, now)?;
    let cfg = cfg.with_derived();
    if json {
        emit_json(&serde_json::to_value(&cfg).unwrap_or_default());
    } else {
        emit(&configure_saved_text(layout, &cfg));
    }
    Ok(exit::SUCCESS)
}

/// `configure --show`: the configuration and where it and the inventory are.
fn configure_show(
    layout: &crate::paths::Layout,
    current: Option<crate::config::InstallerConfig>,
    json: bool,
) -> Result<u8> {
    let Some(config) = current else {
        return Err(EngineError::Usage(
            "there is no configuration yet: write one with `thinkube-deploy configure --target ssh --host NAME=ADDRESS ...` or the desktop wizard".into(),
        ));
    };
    let view = serde_json::json!({
        "config": config,
        "config_file": crate::config::config_file(layout),
        "inventory": layout.inventory_file(),
    });
    show(json, &view, |v| {
        format!(
            "{}\nConfiguration: {}\nInventory: {}\n",
            serde_json::to_string_pretty(&v["config"]).unwrap_or_default(),
            v["config_file"].as_str().unwrap_or(""),
            v["inventory"].as_str().unwrap_or("")
        )
    })
}

/// The configuration with what the command line gives laid over it; a `--role` or
/// `--overlay-ip` of a host it does not have is refused (nothing is saved).
fn apply_configure_args(cfg: &mut crate::config::InstallerConfig, a: ConfigureArgs) -> Result<()> {
    use crate::config::{Overlay, SshAuth, TargetKind};
    if let Some(t) = a.target {
        cfg.target = match t {
            TargetArg::Local => TargetKind::Local,
            TargetArg::Ssh => TargetKind::Ssh,
            TargetArg::Azure => TargetKind::Azure,
        };
    }
    if !a.hosts.is_empty() {
        cfg.hosts = a.hosts;
    }
    if let Some(u) = a.ssh_user {
        cfg.ssh_user = u;
    }
    if let Some(auth) = a.ssh_auth {
        cfg.ssh_auth = match auth {
            SshAuthArg::Key => SshAuth::Key,
            SshAuthArg::Agent => SshAuth::Agent,
            SshAuthArg::Password => SshAuth::Password,
        };
    }
    if let Some(k) = a.ssh_key {
        cfg.ssh_key_path = Some(std::path::absolute(&k).unwrap_or(k).display().to_string());
    }
    if let Some(p) = a.plan {
        // A plan file is kept by its absolute path: `deploy` may run in another folder.
        cfg.plan = match std::path::Path::new(&p).is_file() {
            true => std::path::absolute(&p).map_or(p, |a| a.display().to_string()),
            false => p,
        };
    }
    cfg.flags.extend(a.flags);
    cfg.vars.extend(a.vars);
    let host_names = |cfg: &crate::config::InstallerConfig| {
        cfg.hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let find =
        |cfg: &mut crate::config::InstallerConfig, name: &str, flag: &str| {
            let known = host_names(cfg);
            cfg.hosts
            .iter_mut()
            .position(|h| h.name == name)
            .ok_or_else(|| {
                EngineError::Usage(format!(
                    "{flag} {name}=...: there is no host `{name}` (hosts: {}); nothing was saved",
                    if known.is_empty() { "none yet".to_string() } else { known }
                ))
            })
        };
    for (name, role) in a.roles {
        let i = find(cfg, &name, "--role")?;
        cfg.hosts[i].role = Some(role);
    }
    for (name, ip) in a.overlay_ips {
        let i = find(cfg, &name, "--overlay-ip")?;
        cfg.hosts[i].overlay_ip = Some(ip);
    }
    let settings_given = a.domain.is_some()
        || a.network_cidr.is_some()
        || a.gateway.is_some()
        || a.overlay.is_some()
        || a.zerotier_network_id.is_some()
        || a.overlay_cidr.is_some()
        || a.system_user.is_some()
        || a.admin_email.is_some()
        || a.github_org.is_some();
    if settings_given {
        let t = cfg.thinkube.get_or_insert_with(Default::default);
        let set = |field: &mut Option<String>, v: Option<String>| {
            if v.is_some() {
                *field = v;
            }
        };
        if let Some(d) = a.domain {
            t.domain_name = d;
        }
        if let Some(c) = a.network_cidr {
            t.network_cidr = c;
        }
        if let Some(g) = a.gateway {
            t.network_gateway = g;
        }
        if let Some(o) = a.overlay {
            t.overlay = match o {
                OverlayArg::Zerotier => Overlay::Zerotier,
                OverlayArg::Tailscale => Overlay::Tailscale,
            };
        }
        set(&mut t.zerotier_network_id, a.zerotier_network_id);
        set(&mut t.overlay_cidr, a.overlay_cidr);
        set(&mut t.system_username, a.system_user);
        set(&mut t.admin_email, a.admin_email);
        set(&mut t.github_org, a.github_org);
    }
    Ok(())
}

/// What `configure` says once it saved: where, and for the thinkube plan what to run next.
fn configure_saved_text(
    layout: &crate::paths::Layout,
    cfg: &crate::config::InstallerConfig,
) -> String {
    let mut text = format!(
        "Saved {} and the inventory {}\n",
        crate::config::config_file(layout).display(),
        layout.inventory_file().display()
    );
    if cfg.plan == "thinkube" {
        let on: Vec<String> = cfg
            .flags
            .iter()
            .map(|(k, v)| format!("--flag {k}={v}"))
            .chain(
                cfg.thinkube_vars()
                    .iter()
                    .map(|(k, v)| format!("--var {k}={v}")),
            )
            .collect();
        text.push_str(&format!(
            "Next: thinkube-deploy source, then thinkube-deploy plan check --plan thinkube {}, then deploy with the same flags and variables; give the tokens in the environment ({})\n",
            on.join(" "),
            cfg.tokens()
                .iter()
                .map(|k| if k.required {
                    k.name.to_string()
                } else {
                    format!("{} if you use it", k.name)
                })
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    text
}

fn render_fetched(f: &crate::run::source::Fetched) -> String {
    let how = if f.cloned {
        "cloned from"
    } else {
        "updated from"
    };
    let mut out = format!(
        "{} is at {} ({how} {})\n",
        f.dir.display(),
        f.commit,
        f.from
    );
    if let Some(pin) = &f.pinned {
        out.push_str(&format!(
            "note: the plan pins {pin}; deployments refuse this checkout until it is back at the pin (use --var playbooks_root=PATH to run another commit on purpose)\n"
        ));
    }
    out
}

fn plan_check(
    store: &Store,
    choice: PlanChoice,
    inventory: Option<PathBuf>,
    json: bool,
) -> Result<u8> {
    let layout = store.layout();
    let (plan, choices) = choice.load(store)?;
    let report = crate::run::plan_check::check_environment(
        layout,
        &plan,
        &choices,
        inventory,
        crate::run::runner::ansible_override().as_deref(),
        &|name| std::env::var_os(name),
    )?;
    show(json, &report, crate::run::plan_check::render)?;
    if report.problems.is_empty() {
        return Ok(exit::SUCCESS);
    }
    eprintln!(
        "thinkube-deploy: the plan check found {} problem{} (listed above); fix them and run `thinkube-deploy plan check` again",
        report.problems.len(),
        if report.problems.len() == 1 { "" } else { "s" }
    );
    Ok(exit::BAD_INPUT)
}

fn setup(store: &Store, python: &str) -> Result<u8> {
    use crate::run::setup::{ANSIBLE_CORE, ANSIBLE_PACKAGE, SetupOutcome, install_ansible};
    let home = &store.layout().home;
    emit(&format!(
        "Installing {ANSIBLE_CORE} and {ANSIBLE_PACKAGE} (its collections; about 500 MB) into {}...\n",
        home.join("venv").display()
    ));
    match install_ansible(home, python, store.fs())? {
        SetupOutcome::AlreadyInstalled(p) => emit(&format!("Already installed: {}\n", p.display())),
        SetupOutcome::Installed(p) => emit(&format!("Installed: {}\n", p.display())),
    };
    Ok(exit::SUCCESS)
}

fn render_migration(report: &ops::MigrateReport) -> String {
    let mut text = format!("{}\n", report.message);
    for note in &report.notes {
        text.push_str(&format!("  note: {note}\n"));
    }
    text
}

fn render_recovery(r: &ops::RecoverReport) -> String {
    let mut aside = r
        .moved_aside
        .as_ref()
        .map(|p| format!("; the unreadable file was moved to {}", p.display()))
        .unwrap_or_default();
    if let Some(p) = &r.journal_moved_aside {
        aside.push_str(&format!("; its journal was moved to {}", p.display()));
    }
    format!(
        "Restored the state from {}{aside} (serial {}).\n",
        r.restored_from.display(),
        r.serial
    )
}

fn render_cleanup(r: &ops::CleanupReport, older_than: u32) -> String {
    let mut text = if r.archived.is_empty() {
        format!("No finished runs older than {older_than} days.\n")
    } else {
        format!(
            "Moved {} run(s) to {}.\n",
            r.archived.len(),
            r.archive_dir.display()
        )
    };
    for p in &r.unreadable {
        text.push_str(&format!(
            "  left unreadable run file in place: {}\n",
            p.display()
        ));
    }
    text
}

/// `validate`: compares the state with reality; exits 1 when they differ.
fn validate(
    store: &Store,
    reset_affected: bool,
    yes: bool,
    json: bool,
    wait: LockWait,
    now: Timestamp,
) -> Result<u8> {
    use crate::facts::validate::{check_environment, reset_affected as reset};
    let Some(validation) = check_environment(store, crate::facts::PROBE_TIMEOUT, now)? else {
        emit("There is no deployment to validate.\n");
        return Ok(exit::SUCCESS);
    };
    let found = &validation.mismatches;
    let wants_reset = reset_affected
        && found.iter().any(|m| m.affects_step.is_some())
        && (yes
            || confirm(
                "Mark the earliest affected step and every later one pending, so that resume runs them again?",
            )?);
    let reset = if wants_reset {
        reset(store, found, wait, now)?
    } else {
        Vec::new()
    };
    if json {
        emit_json(&serde_json::json!({
            "mismatches": found,
            "checked": validation.checked,
            "reset": reset,
        }));
    } else {
        emit(&render_mismatches(&validation, &reset));
    }
    Ok(if found.is_empty() {
        exit::SUCCESS
    } else {
        exit::FAILED
    })
}

fn render_mismatches(v: &crate::facts::validate::Validation, reset: &[String]) -> String {
    let found = &v.mismatches;
    if v.checked.is_empty() {
        return "Nothing to check: no Terraform state was read and no host is reached over SSH (a local target), so there is no reality to compare with.\n".to_string();
    }
    if found.is_empty() {
        return format!(
            "The state matches reality: no mismatch found. Checked {}.\n",
            v.checked.join(", ")
        );
    }
    let mut text = String::new();
    for m in found {
        let affects = m
            .affects_step
            .as_deref()
            .map_or("no step yet".to_string(), |s| {
                format!("step `{s}` and later")
            });
        text.push_str(&format!(
            "✗ {}\n    affects: {affects}\n    what to do: {}\n",
            m.detail, m.what_to_do
        ));
    }
    if !reset.is_empty() {
        text.push_str(&format!(
            "Marked pending: {}. Run `thinkube-deploy resume` to run them again.\n",
            reset.join(", ")
        ));
    }
    text
}

/// `facts`: the cached facts (after a refresh with `--refresh`).
fn facts(store: &Store, refresh: bool, json: bool, wait: LockWait, now: Timestamp) -> Result<u8> {
    if refresh {
        let password = std::env::var(crate::config::SSH_PASSWORD_ENV)
            .ok()
            .filter(|p| !p.is_empty());
        let summary = crate::facts::refresh_configured(store, wait, now, password.as_deref())?;
        if !json {
            for line in &summary {
                emit(&format!("{line}\n"));
            }
        }
    }
    let (facts, runtime) = crate::facts::cached(store, now)?;
    if json {
        use crate::state::fact_keys::{AzureRefresh, FactKey, value};
        let refresh: Option<AzureRefresh> = facts
            .iter()
            .find(|f| f.key == FactKey::AzureRefresh.text())
            .and_then(|f| value(&f.value));
        let arm = refresh.as_ref().map(|r| r.arm_requests);
        // Set when a run's gates refreshed the VM facts: that run's total.
        let in_run = refresh.and_then(|r| {
            Some(serde_json::json!({ "run_id": r.run_id?, "requests": r.arm_requests_in_run? }))
        });
        emit_json(&serde_json::json!({
            "facts": facts,
            "arm_requests_last_refresh": arm,
            "arm_requests_last_run": in_run,
            "runtime": runtime,
        }));
    } else {
        emit(&crate::facts::render(&facts));
        emit(&crate::facts::render_runtime(&runtime, now));
    }
    Ok(exit::SUCCESS)
}

fn clean_state(store: &Store, yes: bool, wait: LockWait, now: Timestamp) -> Result<u8> {
    if !yes
        && !confirm(
            "Archive the current deployment's progress into history and clear it? Inventory and configuration are kept.",
        )?
    {
        emit("Nothing changed.\n");
        return Ok(exit::SUCCESS);
    }
    match ops::clean_state(store, wait, now)?.archived_to {
        Some(p) => emit(&format!(
            "Progress archived to {} and cleared; inventory and configuration kept.\n",
            p.display()
        )),
        None => emit("There is no progress to clear.\n"),
    };
    Ok(exit::SUCCESS)
}

fn all_runs(store: &Store, now: Timestamp) -> Result<Vec<crate::state::model::RunRecord>> {
    let (runs, unreadable) = history::all_runs(store, now)?;
    for (path, reason) in unreadable {
        eprintln!(
            "thinkube-deploy: skipping unreadable run file {}: {reason}",
            path.display()
        );
    }
    Ok(runs)
}

fn print_events(store: &Store, run: Option<&str>, follow: bool, json: bool) -> Result<()> {
    let wanted = |e: &Event| run.is_none_or(|r| e.run_id.as_deref() == Some(r));
    let format = |e: &Event| -> String {
        if json {
            serde_json::to_string(e).unwrap_or_default()
        } else {
            format!(
                "#{:<5} {} {:<18} {}{}{}",
                e.seq,
                e.at,
                serde_json::to_value(e.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                e.step
                    .as_deref()
                    .map(|s| format!("[{s}] "))
                    .unwrap_or_default(),
                e.message,
                e.run_id
                    .as_deref()
                    .map(|r| format!("  (run {r})"))
                    .unwrap_or_default(),
            )
        }
    };
    let read = store.read_events()?;
    if read.torn_tail > 0 && !follow {
        eprintln!(
            "thinkube-deploy: the last line of {} is incomplete ({} bytes; a write was cut short) and was skipped; the next change drops it",
            store.layout().events_file().display(),
            read.torn_tail
        );
    }
    for line in &read.bad_lines {
        eprintln!(
            "thinkube-deploy: skipped unreadable line {line} of {}",
            store.layout().events_file().display()
        );
    }
    let mut text = String::new();
    for e in read.events.iter().filter(|e| wanted(e)) {
        text.push_str(&format(e));
        text.push('\n');
    }
    emit(&text);
    if !follow {
        return Ok(());
    }
    // Follow: poll the file for complete new lines (like `tail -f`). A reader never
    // takes the lock, so polling is the only way to learn of new lines.
    let path = store.layout().events_file();
    let mut last_seq = read.events.last().map_or(0, |e| e.seq);
    let mut offset: u64 = 0;
    let mut pending = Vec::new();
    loop {
        if let Ok(Some(mut f)) = crate::state::fsops::open_regular(&path) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if len < offset {
                offset = 0; // truncated (torn line dropped): read again, skipping seen seqs
                pending.clear();
            }
            if len > offset && f.seek(SeekFrom::Start(offset)).is_ok() {
                let mut chunk = Vec::new();
                if f.read_to_end(&mut chunk).is_ok() {
                    offset += chunk.len() as u64;
                    pending.extend_from_slice(&chunk);
                    let complete = pending
                        .iter()
                        .rposition(|b| *b == b'\n')
                        .map_or(0, |i| i + 1);
                    let lines: Vec<u8> = pending.drain(..complete).collect();
                    let mut out = String::new();
                    for line in lines.split(|b| *b == b'\n') {
                        if let Ok(e) = serde_json::from_slice::<Event>(line)
                            && e.seq > last_seq
                        {
                            last_seq = e.seq;
                            if wanted(&e) {
                                out.push_str(&format(&e));
                                out.push('\n');
                            }
                        }
                    }
                    if !emit(&out) {
                        return Ok(());
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `hosts` and `hosts trust`.
fn hosts(
    store: &Store,
    action: Option<HostsCommand>,
    inventory: Option<PathBuf>,
    json: bool,
    now: Timestamp,
) -> Result<u8> {
    use crate::facts::host_keys;
    let home = store.layout().home.clone();
    let recorded = store
        .load(now)?
        .and_then(|l| l.state.deployment.configuration.inventory)
        .map(|i| PathBuf::from(i.path));
    let Some(path) = inventory
        .or(recorded)
        .or_else(|| Some(store.layout().inventory_file()).filter(|p| p.exists()))
    else {
        return Err(EngineError::Usage(
            "there is no inventory to read hosts from: give one with --inventory PATH, or add hosts in the installer's window".into(),
        ));
    };
    let hosts = host_keys::ssh_hosts(&path)?;
    match action {
        Some(HostsCommand::Check { json }) => hosts_check(&home, &hosts, json),
        None => {
            hosts_list(&host_keys::check(&home, &hosts), json);
            Ok(exit::SUCCESS)
        }
        Some(HostsCommand::Trust { hosts: named, yes }) => {
            hosts_trust(&home, &path, host_keys::check(&home, &hosts), &named, yes)
        }
    }
}

/// `hosts check`: the pre-flight of every host (answers, key trusted, login, sudo);
/// exit 2 naming each host not ready.
fn hosts_check(home: &Path, hosts: &[crate::facts::host_keys::SshHost], json: bool) -> Result<u8> {
    use crate::facts::host_keys::{self, Trust};
    let password = std::env::var(crate::config::SSH_PASSWORD_ENV).ok();
    let become_password = std::env::var(host_keys::BECOME_PASSWORD_ENV).ok();
    let checks = host_keys::preflight(
        home,
        hosts,
        host_keys::Logins {
            password: password.as_deref(),
            become_password: become_password.as_deref().filter(|p| !p.is_empty()),
            needs_sudo: true,
            missing_password: None,
        },
    );
    if json {
        emit_json(&checks);
    } else {
        let mut text = String::new();
        for c in &checks {
            let mark = |ok: Option<bool>| match ok {
                Some(true) => "✓",
                Some(false) => "✗",
                None => "-",
            };
            text.push_str(&format!(
                "{:<16} {}:{:<6} answers {}  key {}  login {}  sudo {}\n",
                c.host.name,
                c.host.address,
                c.host.port,
                mark(Some(c.reachable)),
                mark(Some(c.trust == Trust::Trusted)),
                mark(c.login),
                match (c.sudo, c.host.user.as_deref()) {
                    (None, Some("root")) if c.login == Some(true) => "not needed (root)",
                    (s, _) => mark(s),
                }
            ));
            for p in &c.problems {
                text.push_str(&format!("    {p}\n"));
            }
        }
        if checks.is_empty() {
            text.push_str("The inventory has no hosts reached over SSH.\n");
        }
        emit(&text);
    }
    let failing: Vec<String> = checks
        .iter()
        .filter(|c| !c.problems.is_empty())
        .map(|c| format!("{}: {}", c.host.name, c.problems.join("; ")))
        .collect();
    if failing.is_empty() {
        return Ok(exit::SUCCESS);
    }
    eprintln!(
        "thinkube-deploy: {} of {} host(s) not ready: {}",
        failing.len(),
        checks.len(),
        failing.join(" | ")
    );
    Ok(exit::BAD_INPUT)
}

/// `hosts`: each host with whether its key is trusted, and its fingerprint.
fn hosts_list(views: &[crate::facts::host_keys::HostKeyView], json: bool) {
    use crate::facts::host_keys::Trust;
    if json {
        emit_json(&views);
        return;
    }
    let mut text = String::new();
    for v in views {
        text.push_str(&format!(
            "{:<16} {}:{:<6} {:<11} {}{}\n",
            v.host.name,
            v.host.address,
            v.host.port,
            match v.trust {
                Trust::Trusted => "trusted",
                Trust::Unknown => "not trusted",
                Trust::Changed => "CHANGED",
                Trust::Unreachable => "no answer",
            },
            v.fingerprint.as_deref().unwrap_or("-"),
            v.problem
                .as_deref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default()
        ));
    }
    if views.is_empty() {
        text.push_str("The inventory has no hosts reached over SSH.\n");
    }
    emit(&text);
}

/// `hosts trust [HOST...]`: the keys of the hosts named (all when none) that are not
/// trusted yet, shown, confirmed (or `--yes`), then trusted; a changed key is refused.
fn hosts_trust(
    home: &Path,
    inventory: &Path,
    views: Vec<crate::facts::host_keys::HostKeyView>,
    named: &[String],
    yes: bool,
) -> Result<u8> {
    use crate::facts::host_keys::{self, Trust};
    if let Some(unknown) = named
        .iter()
        .find(|n| !views.iter().any(|v| &v.host.name == *n))
    {
        return Err(EngineError::Usage(format!(
            "there is no host `{unknown}` in {}; `thinkube-deploy hosts` lists them",
            inventory.display()
        )));
    }
    let chosen: Vec<_> = views
        .into_iter()
        .filter(|v| named.is_empty() || named.contains(&v.host.name))
        .collect();
    if let Some(refused) = host_keys::refusal(home, &chosen)
        .filter(|_| chosen.iter().any(|v| v.trust == Trust::Changed))
    {
        return Err(refused);
    }
    for v in chosen.iter().filter(|v| v.trust == Trust::Unreachable) {
        eprintln!(
            "thinkube-deploy: {} did not answer, so its key cannot be read: {}",
            v.host.describe(),
            v.problem.as_deref().unwrap_or("no answer")
        );
    }
    let new: Vec<_> = chosen
        .iter()
        .filter(|v| v.trust == Trust::Unknown)
        .collect();
    if new.is_empty() {
        emit("Nothing to trust: every host that answered is trusted already.\n");
        return Ok(exit::SUCCESS);
    }
    let list: String = new
        .iter()
        .map(|v| format!("  {}\n", v.describe()))
        .collect();
    emit(&format!("Host keys to trust:\n{list}"));
    if !yes && !confirm("Do these fingerprints match the hosts' own?")? {
        emit("Nothing was trusted.\n");
        return Ok(exit::BAD_INPUT);
    }
    let trusted = host_keys::trust(home, &chosen)?;
    emit(&format!(
        "Trusted {} in {}.\n",
        trusted.join(", "),
        host_keys::known_hosts_file(home).display()
    ));
    Ok(exit::SUCCESS)
}

fn confirm(question: &str) -> Result<bool> {
    if !io::stdin().is_terminal() {
        return Err(EngineError::Usage(
            "this needs confirmation and there is no terminal to ask on: pass --yes".into(),
        ));
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| EngineError::io("read the answer from", "standard input", e))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Writes to stdout; returns false when the reader went away (a closed pipe is not
/// an error for a command whose output is being piped to `head`).
fn emit(text: &str) -> bool {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_ok()
}

fn emit_json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            emit(&format!("{text}\n"));
        }
        Err(e) => eprintln!("thinkube-deploy: internal error: cannot encode the output: {e}"),
    }
}

/// Info-level logs of changing commands go to `<env>/logs/engine.log` (0600);
/// `THINKUBE_LOG=debug` (or any filter) also prints them on stderr.
fn init_logging(layout: &Layout, writes: bool) {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, fmt};
    let stderr_layer = std::env::var("THINKUBE_LOG").ok().map(|filter| {
        fmt::layer()
            .with_writer(io::stderr)
            .with_filter(EnvFilter::new(filter))
    });
    let file_layer = writes.then(|| {
        let log = std::sync::Arc::new(LazyLog {
            root: layout.root.clone(),
            dir: layout.logs_dir(),
            file: std::sync::Mutex::new(None),
        });
        fmt::layer()
            .with_ansi(false)
            .with_writer(move || LazyLogWriter(log.clone()))
            .with_filter(EnvFilter::new("info"))
    });
    let _ = tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
        .try_init();
}

/// The log file, opened on the first line written, and only if the environment's
/// folder exists: a command refused before it changes anything (a bad plan, a
/// locked state) leaves no trace on disk.
struct LazyLog {
    root: PathBuf,
    dir: PathBuf,
    file: std::sync::Mutex<Option<std::fs::File>>,
}

struct LazyLogWriter(std::sync::Arc<LazyLog>);

impl Write for LazyLogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let log = &self.0;
        let Ok(mut guard) = log.file.lock() else {
            return Ok(buf.len());
        };
        if guard.is_none() && log.root.is_dir() {
            use crate::state::fsops::{FileOps, RealFs, open_append_regular};
            if RealFs.create_dir_all(&log.dir).is_ok() {
                *guard = open_append_regular(&log.dir.join("engine.log")).ok();
            }
        }
        match guard.as_mut() {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.0.file.lock() {
            Ok(mut g) => g.as_mut().map_or(Ok(()), |f| f.flush()),
            Err(_) => Ok(()),
        }
    }
}

/// Runs deploy, resume or retry; prints progress; maps the outcome to an exit code.
fn run_deployment(
    store: &Store,
    kind: RunKind,
    steps: Vec<String>,
    run: RunArgs,
    wait: LockWait,
) -> Result<u8> {
    let stop = signals::for_a_run();
    if stop.load(std::sync::atomic::Ordering::SeqCst) {
        eprintln!(
            "thinkube-deploy: stopped before the {} began; nothing ran",
            kind.as_str()
        );
        return Ok(exit::STOPPED);
    }
    let args = deploy::DeployArgs {
        steps,
        plan: run.plan,
        inventory: run.inventory,
        flags: run.flags.into_iter().collect(),
        vars: run.vars.into_iter().collect(),
        wait,
        skip_checks: run.skip_checks,
        ..deploy::DeployArgs::from_env(kind, PROGRAM)
    };
    let json = run.json;
    let mut bars = (!json && io::stdout().is_terminal()).then(TerminalProgress::default);
    let mut print = |p: deploy::Progress| {
        if json {
            if let Ok(line) = serde_json::to_string(&p) {
                emit(&format!("{line}\n"));
            }
        } else if let Some(bars) = bars.as_mut() {
            bars.show(&p);
        } else if let Some(text) = progress_line(&p) {
            emit(&text);
        }
    };
    let ended = deploy::execute(store, &args, stop, &mut print)?;
    let stopped = stop.load(std::sync::atomic::Ordering::SeqCst);
    Ok(match ended {
        deploy::Ended::AlreadyCompleted { deployment_id } => {
            if !json {
                emit(&format!(
                    "Deployment {} is already completed; nothing to do. (`thinkube-deploy retry STEP` runs a step again; `clean-state` starts over.)\n",
                    deployment_id.as_deref().unwrap_or("-")
                ));
            }
            exit::SUCCESS
        }
        deploy::Ended::Blocked {
            gate,
            reason,
            phase,
            ..
        } => {
            eprintln!(
                "thinkube-deploy: phase `{phase}` did not start: gate {gate} blocked: {reason}. No step was changed; fix the cause, then run `thinkube-deploy resume`"
            );
            exit::GATE_BLOCKED
        }
        deploy::Ended::Ran(summary)
            if summary.status == crate::state::model::DeploymentStatus::AwaitingRestart =>
        {
            if !json {
                emit("Restart this machine, then run `thinkube-deploy deploy` to continue.\n");
            }
            exit::SUCCESS
        }
        deploy::Ended::Ran(summary) => match summary.outcome {
            crate::state::model::RunOutcome::Success => exit::SUCCESS,
            crate::state::model::RunOutcome::Interrupted if stopped => exit::STOPPED,
            _ => exit::FAILED,
        },
    })
}

/// Progress on a terminal: one bar for the run (steps done of all, elapsed), its
/// message the phase, step and current task; finished steps print above it.
#[derive(Default)]
struct TerminalProgress {
    bar: Option<indicatif::ProgressBar>,
    step: String,
}

impl TerminalProgress {
    fn show(&mut self, p: &deploy::Progress) {
        use deploy::Progress as P;
        match p {
            P::RunStarted { total, done, .. } => {
                let bar = indicatif::ProgressBar::new(*total as u64);
                let style = indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:28} {pos}/{len} {wide_msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                bar.set_style(style);
                bar.set_position(*done as u64);
                bar.enable_steady_tick(Duration::from_millis(120));
                if let Some(text) = progress_line(p) {
                    bar.println(text.trim_end());
                }
                self.bar = Some(bar);
            }
            P::StepStarted {
                phase,
                step,
                title,
                attempt,
                ..
            } => {
                let again = if *attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                self.step = format!("{phase} / {step}: {title}{again}");
                if let Some(bar) = &self.bar {
                    bar.set_message(self.step.clone());
                }
            }
            P::Output {
                output: crate::run::runner::Output::Task { event },
                ..
            } if event.event == crate::run::runner::EventName::TaskStart => {
                if let Some(bar) = &self.bar {
                    bar.set_message(format!(
                        "{} — {}",
                        self.step,
                        event.task.as_deref().unwrap_or("")
                    ));
                }
            }
            P::Output { .. } => {}
            P::RunFinished { .. } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                if let Some(text) = progress_line(p) {
                    emit(&text);
                }
            }
            other => {
                if let (Some(bar), Some(text)) = (&self.bar, progress_line(other)) {
                    bar.println(text.trim_end());
                    if matches!(
                        other,
                        P::StepFinished {
                            outcome: crate::state::model::AttemptOutcome::Success,
                            ..
                        }
                    ) {
                        bar.inc(1);
                    }
                }
            }
        }
    }
}

/// One progress event as plain lines (when output is not a terminal).
fn progress_line(p: &deploy::Progress) -> Option<String> {
    use deploy::Progress as P;
    Some(match p {
        P::RunStarted {
            run_id,
            plan_id,
            total,
            done,
        } => format!("Run {run_id}: plan {plan_id}, {total} steps, {done} already done\n"),
        P::StepStarted {
            step,
            title,
            phase,
            attempt,
            index,
            total,
            ..
        } => {
            let again = if *attempt > 1 {
                format!(" (attempt {attempt})")
            } else {
                String::new()
            };
            format!("[{index}/{total}] {phase} / {step}: {title}{again}\n")
        }
        P::Output {
            output: crate::run::runner::Output::Task { event },
            ..
        } if event.event == crate::run::runner::EventName::TaskStart => {
            format!("      {}\n", event.human())
        }
        P::Output {
            output: crate::run::runner::Output::Line { line, .. },
            ..
        } => format!("      {line}\n"),
        P::Output { .. } => return None,
        P::StepFinished {
            step,
            outcome,
            error,
        } => match (outcome, error) {
            (crate::state::model::AttemptOutcome::Success, _) => format!("  ✓ {step}\n"),
            (crate::state::model::AttemptOutcome::Interrupted, _) => {
                format!("  ! {step} interrupted\n")
            }
            (_, Some(e)) => {
                let mut at = Vec::new();
                if let Some(t) = &e.task {
                    at.push(format!("task \"{t}\""));
                }
                if let Some(h) = &e.host {
                    at.push(format!("host {h}"));
                }
                if let Some(c) = e.exit_code {
                    at.push(format!("exit code {c}"));
                }
                format!("  ✗ {step}: {} ({})\n", e.message, at.join(", "))
            }
            (_, None) => format!("  ✗ {step}\n"),
        },
        P::Retrying {
            step,
            next_attempt,
            delay_seconds,
        } => format!("  retrying {step} in {delay_seconds}s (attempt {next_attempt})\n"),
        P::RunFinished {
            outcome, status, ..
        } => {
            let next = match status {
                crate::state::model::DeploymentStatus::Failed => {
                    " Run `thinkube-deploy retry` once the cause is fixed."
                }
                crate::state::model::DeploymentStatus::Interrupted => {
                    " Run `thinkube-deploy resume` to continue."
                }
                _ => "",
            };
            format!(
                "Run {}: deployment {}.{next}\n",
                outcome.as_str(),
                status.as_str().replace('_', " ")
            )
        }
    })
}

/// Asks the process running a deployment to stop (SIGTERM), then waits for it.
fn cancel(store: &Store) -> Result<u8> {
    let Some(holder) = ops::request_cancel(store)? else {
        emit("No deployment is running.\n");
        return Ok(exit::SUCCESS);
    };
    emit(&format!(
        "Asked pid {} ({}) to stop; waiting for it to record the running step as interrupted...\n",
        holder.pid, holder.operation
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while store.lock_holder().is_some_and(|h| h.pid == holder.pid) {
        if std::time::Instant::now() > deadline {
            return Err(EngineError::CancelTimedOut { pid: holder.pid });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    emit("Stopped.\n");
    Ok(exit::SUCCESS)
}
