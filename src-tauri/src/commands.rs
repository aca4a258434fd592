//! The Tauri commands: each a few lines over one engine call. The page may call only
//! these (capabilities/main.json). Errors reach the page as `AppError`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use tauri::ipc::Channel;
use tauri::{AppHandle, Manager, State};
use thinkube_engine::config::{self, FieldProblem, InstallerConfig, SshAuth};
use thinkube_engine::facts::hardware;
use thinkube_engine::facts::host_keys::{self, HostCheck, HostKeyView};
use thinkube_engine::facts::readiness::{self, NotReady};
use thinkube_engine::facts::validate::{self, Validation};
use thinkube_engine::facts::{self, FactView};
use thinkube_engine::plan::builtin::PlanRef;
use thinkube_engine::plan::outline::{self, PlanOutline};
use thinkube_engine::report::completion::Completion;
use thinkube_engine::report::history::{self, HistoryListing, RunDiff, StepTimings};
use thinkube_engine::report::log::{self, LogPage, SavedLog, Window};
use thinkube_engine::report::plans::{self as catalog, PlanChoice};
use thinkube_engine::retry::RetryPolicy;
use thinkube_engine::run::deploy::{self, DeployArgs};
use thinkube_engine::run::plan_check::{self, CheckReport};
use thinkube_engine::run::requirements::{self, Requirement};
use thinkube_engine::run::runner;
use thinkube_engine::run::setup;
use thinkube_engine::run::source::{self, Fetched, SourceView};
use thinkube_engine::state::fact_keys::HardwareFact;
use thinkube_engine::state::lock::LockWait;
use thinkube_engine::state::model::{RunKind, RunRecord};
use thinkube_engine::state::ops::{self, RecoverSource};
use thinkube_engine::timestamp::Timestamp;
use ts_rs::TS;

use crate::AppState;
use crate::error::{AppError, ErrorCode};
use crate::keyring::{Keyring, KeyringStatus};
use crate::launch::LaunchInfo;
use crate::snapshot::{self, Snapshot};
use crate::worker::{self, RunEvent};

type Result<T> = std::result::Result<T, AppError>;

#[tauri::command]
pub fn launch_info(state: State<'_, AppState>) -> LaunchInfo {
    state.launch.clone()
}

#[tauri::command]
pub async fn get_state(
    window: tauri::WebviewWindow,
    state: State<'_, AppState>,
) -> Result<Snapshot> {
    let snap = snapshot::take(&state.store, state.running());
    let _ = window.set_title(&snap.title);
    Ok(snap)
}

/// One attempt of the readiness check, as it reports in.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct ReadinessAttempt {
    pub attempt: u32,
    pub of: u32,
    pub problems: Vec<NotReady>,
}

/// `--skip-config`: is the environment ready (state, lock, inventory)? Tries with
/// the engine's readiness policy (5 attempts, 2 s apart), reporting each attempt.
#[tauri::command]
pub async fn backend_retry(
    state: State<'_, AppState>,
    on_attempt: Channel<ReadinessAttempt>,
) -> Result<()> {
    let policy = RetryPolicy::readiness();
    let mut last = Vec::new();
    for attempt in 1..=policy.attempts {
        last = readiness::check(&state.store, Timestamp::now());
        let _ = on_attempt.send(ReadinessAttempt {
            attempt,
            of: policy.attempts,
            problems: last.clone(),
        });
        if last.is_empty() {
            return Ok(());
        }
        match policy.delay_before(attempt + 1) {
            Some(d) => tokio::time::sleep(d).await,
            None => break,
        }
    }
    let what: Vec<String> = last.iter().map(|p| p.message.clone()).collect();
    Err(AppError::new(
        ErrorCode::NotReady,
        format!(
            "Not ready after {} attempts: {}",
            policy.attempts,
            what.join("; ")
        ),
    ))
}

#[tauri::command]
pub async fn load_config(state: State<'_, AppState>) -> Result<Option<InstallerConfig>> {
    Ok(config::load(state.store.layout())?)
}

/// The configuration's problems, each tied to a wizard field.
#[tauri::command]
pub fn check_config(config: InstallerConfig) -> Vec<FieldProblem> {
    config.problems()
}

#[tauri::command]
pub async fn save_config(state: State<'_, AppState>, config: InstallerConfig) -> Result<()> {
    Ok(config::save(&state.store, &config, Timestamp::now())?)
}

#[tauri::command]
pub async fn plan_show(
    state: State<'_, AppState>,
    plan: Option<String>,
    flags: BTreeMap<String, bool>,
    vars: BTreeMap<String, String>,
) -> Result<PlanOutline> {
    let plan = PlanRef::parse(plan.as_deref())?.load(&state.store.layout().root.join("plans"))?;
    let choices = plan
        .choose(&flags, &vars)
        .map_err(thinkube_engine::EngineError::from)?;
    Ok(outline::outline(&plan, &choices))
}

/// What the Start, Resume and Retry buttons ask for.
#[derive(Deserialize, TS)]
#[ts(export)]
pub struct RunRequest {
    pub kind: RunKind,
    /// For `retry`: the steps to run again (empty: every failed step).
    pub steps: Vec<String>,
    /// The SSH password, when the configuration uses one and this window has not
    /// been given it yet. Kept in memory only.
    pub ssh_password: Option<String>,
    /// Tokens the plan's playbooks read (`run_tokens` lists them), given in the
    /// window. Kept in memory only, for as long as the window is open.
    #[serde(default)]
    pub tokens: BTreeMap<String, String>,
    /// Keep the tokens given with this request in the desktop's keyring too, so that
    /// the next window does not ask for them.
    #[serde(default)]
    pub remember_tokens: bool,
}

/// A token a run reads, and whether this window (or its environment) has it.
#[derive(Serialize, TS)]
#[ts(export)]
pub struct TokenNeed {
    /// The environment variable the playbooks read, e.g. `CLOUDFLARE_TOKEN`.
    pub name: String,
    pub what: String,
    pub required: bool,
    /// This window has it: given here, kept in the keyring, or in the environment.
    pub given: bool,
    /// It comes from the desktop's keyring (and `forget_tokens` removes it).
    pub in_keyring: bool,
}

/// The tokens a run reads, and whether the desktop's keyring can keep them.
#[derive(Serialize, TS)]
#[ts(export)]
pub struct RunTokens {
    pub tokens: Vec<TokenNeed>,
    pub keyring: KeyringStatus,
}

/// The tokens a run of the saved configuration reads (none for most plans).
#[tauri::command]
pub async fn run_tokens(state: State<'_, AppState>) -> Result<RunTokens> {
    let cfg = config::load(state.store.layout())?;
    let needed: Vec<_> = cfg.iter().flat_map(|c| c.tokens()).collect();
    let keyring = Keyring::for_environment(&state.store.layout().root);
    let status = if needed.is_empty() {
        KeyringStatus {
            available: false,
            why: Some("no token is needed".to_string()),
        }
    } else {
        keyring.status()
    };
    let given = state.tokens.lock().map_err(|_| poisoned())?.clone();
    let tokens = needed
        .iter()
        .map(|t| {
            let value = token_value(&given, status.available.then_some(&keyring), t.name);
            TokenNeed {
                name: t.name.to_string(),
                what: t.what.to_string(),
                required: t.required,
                given: value.is_some(),
                in_keyring: matches!(value, Some((_, TokenSource::Keyring))),
            }
        })
        .collect();
    Ok(RunTokens {
        tokens,
        keyring: status,
    })
}

/// Removes this environment's tokens from the desktop's keyring (those the saved
/// configuration reads), and from this window's memory.
#[tauri::command]
pub async fn forget_tokens(state: State<'_, AppState>) -> Result<()> {
    let cfg = config::load(state.store.layout())?;
    let keyring = Keyring::for_environment(&state.store.layout().root);
    let mut given = state.tokens.lock().map_err(|_| poisoned())?;
    for t in cfg.iter().flat_map(|c| c.tokens()) {
        given.remove(t.name);
        keyring
            .forget(t.name)
            .map_err(|why| AppError::new(ErrorCode::Keyring, why))?;
    }
    Ok(())
}

/// Where a token's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenSource {
    Window,
    Keyring,
    Environment,
}

/// A token's value: given in this window, else kept in the keyring (when there is
/// one), else in the app's own environment.
fn token_value(
    given: &BTreeMap<String, String>,
    keyring: Option<&Keyring>,
    name: &str,
) -> Option<(String, TokenSource)> {
    let nonempty = |v: &String| !v.is_empty();
    given
        .get(name)
        .cloned()
        .filter(nonempty)
        .map(|v| (v, TokenSource::Window))
        .or_else(|| {
            keyring
                .and_then(|k| k.get(name).ok().flatten())
                .map(|v| (v, TokenSource::Keyring))
        })
        .or_else(|| {
            std::env::var(name)
                .ok()
                .filter(nonempty)
                .map(|v| (v, TokenSource::Environment))
        })
}

// Never print the password.
impl std::fmt::Debug for RunRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunRequest")
            .field("kind", &self.kind)
            .field("steps", &self.steps)
            .field("remember_tokens", &self.remember_tokens)
            .finish_non_exhaustive()
    }
}

/// The secret values a run's steps get in their environment: the plan's tokens
/// (given now, earlier in this window, or kept in the keyring; those given now kept
/// there first when asked to) and the SSH password of a remote password login.
/// Names what is missing, before anything runs.
fn run_secrets(
    state: &AppState,
    cfg: Option<&config::InstallerConfig>,
    tokens: BTreeMap<String, String>,
    remember_tokens: bool,
) -> Result<BTreeMap<String, String>> {
    let password = state.ssh_password.lock().map_err(|_| poisoned())?.clone();
    let mut secret_env = BTreeMap::new();
    if let Some(c) = cfg {
        let needed = c.tokens();
        let keyring = Keyring::for_environment(&state.store.layout().root);
        let fresh: BTreeMap<String, String> = tokens
            .into_iter()
            .filter(|(name, value)| !value.is_empty() && needed.iter().any(|t| t.name == *name))
            .collect();
        // Kept first: a keyring that refuses is said before anything runs.
        if remember_tokens {
            for (name, value) in &fresh {
                keyring
                    .set(name, value)
                    .map_err(|why| AppError::new(ErrorCode::Keyring, why))?;
            }
        }
        let given = {
            let mut given = state.tokens.lock().map_err(|_| poisoned())?;
            given.extend(fresh);
            given.clone()
        };
        let keyring = (!needed.is_empty()).then_some(&keyring);
        let mut missing = Vec::new();
        for t in needed {
            match token_value(&given, keyring, t.name) {
                Some((v, _)) => {
                    secret_env.insert(t.name.to_string(), v);
                }
                None if t.required => missing.push(format!("{} ({})", t.name, t.what)),
                None => {}
            }
        }
        if !missing.is_empty() {
            return Err(AppError::new(
                ErrorCode::NeedsTokens,
                format!(
                    "The plan's playbooks need {}: tokens are never written to a file, so they are asked for in this window (and kept in memory until it closes, or in the desktop's keyring if you choose).",
                    missing.join(", ")
                ),
            ));
        }
    }
    if cfg.is_some_and(|c| c.ssh_auth == SshAuth::Password && c.target != config::TargetKind::Local)
    {
        match password {
            Some(p) => {
                secret_env.insert(config::SSH_PASSWORD_ENV.to_string(), p);
            }
            None => {
                return Err(AppError::new(
                    ErrorCode::NeedsPassword,
                    "The SSH password is needed: it is never saved, so it is asked for again after the installer restarts.",
                ));
            }
        }
    }
    Ok(secret_env)
}

/// The plan a run of `kind` asks for: for a deploy, the window's `--plan` or the
/// configuration's; otherwise the deployment's own.
fn run_plan(
    state: &AppState,
    kind: RunKind,
    cfg: Option<&config::InstallerConfig>,
) -> Option<String> {
    match kind {
        RunKind::Deploy => state
            .launch
            .plan
            .clone()
            .or_else(|| cfg.map(|c| c.plan.clone())),
        // The window has no `--plan` to accept a plan that changed since the
        // deployment last ran it: it runs the deployment's own plan as it is now
        // (what changed is matched by id and shown, as with `--plan`).
        _ => state
            .store
            .load(Timestamp::now())
            .ok()
            .flatten()
            .and_then(|l| l.state.deployment.plan_source),
    }
}

/// Starts a deployment, resume or retry on a background thread; its progress arrives
/// through `on_event`. Returns at once.
#[tauri::command]
pub async fn start_run(
    app: AppHandle,
    state: State<'_, AppState>,
    request: RunRequest,
    on_event: Channel<Vec<RunEvent>>,
) -> Result<()> {
    let cfg = config::load(state.store.layout())?;
    if let Some(p) = request.ssh_password.filter(|p| !p.is_empty()) {
        *state.ssh_password.lock().map_err(|_| poisoned())? = Some(p);
    }
    let secret_env = run_secrets(
        &state,
        cfg.as_ref(),
        request.tokens,
        request.remember_tokens,
    )?;
    let plan = run_plan(&state, request.kind, cfg.as_ref());
    // The window runs against the wizard's inventory as it is now: the wizard is
    // where its user changes the hosts, on purpose (the CLI needs `--inventory`).
    let inventory =
        Some(state.store.layout().inventory_file()).filter(|p| cfg.is_some() && p.exists());
    let args = DeployArgs {
        steps: request.steps,
        plan,
        inventory,
        flags: cfg.as_ref().map(|c| c.flags.clone()).unwrap_or_default(),
        vars: cfg.as_ref().map(|c| c.vars.clone()).unwrap_or_default(),
        secret_env,
        ..DeployArgs::from_env(request.kind, crate::PROGRAM)
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let mut running = state.stop.lock().map_err(|_| poisoned())?;
        if running.is_some() {
            return Err(AppError::new(
                ErrorCode::Busy,
                "A deployment is already running in this window.",
            ));
        }
        *running = Some(stop.clone());
    }
    let window = app.get_webview_window("main");
    let handle = app.clone();
    worker::spawn(
        state.store.clone(),
        args,
        stop,
        (on_event, window),
        move |ended| {
            let state = handle.state::<AppState>();
            if let Ok(mut running) = state.stop.lock() {
                *running = None;
            }
            // Before the app may exit: the desktop hears how it ended.
            if let Some(ended) = &ended {
                crate::notify::run_ended(ended, &state.store);
            }
            // The window was closed during the run: the app's work is done.
            if state.exit_when_done.load(Ordering::SeqCst) {
                handle.exit(0);
            }
        },
    );
    Ok(())
}

/// What the page hears about its window.
#[derive(Debug, Clone, Serialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
#[ts(export)]
pub enum WindowNotice {
    /// The window's close button was pressed while a deployment runs: the window
    /// stays open until the page says what to do (`close_window`).
    CloseRequested,
}

/// What to do with a deployment when its window is closed.
#[derive(Debug, Clone, Copy, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum CloseChoice {
    /// The window hides; the run goes on and the app exits when it ends (opening
    /// the installer again on the environment shows the window).
    Background,
    /// The run is stopped (the running step recorded interrupted), then the app exits.
    Stop,
}

/// Where the page hears about its window, for the life of the page.
#[tauri::command]
pub fn window_notices(state: State<'_, AppState>, on_notice: Channel<WindowNotice>) -> Result<()> {
    *state.notices.lock().map_err(|_| poisoned())? = Some(on_notice);
    Ok(())
}

/// Closes the window as chosen while a deployment runs; with no run, the app exits.
#[tauri::command]
pub fn close_window(app: AppHandle, state: State<'_, AppState>, choice: CloseChoice) -> Result<()> {
    state.exit_when_done.store(true, Ordering::SeqCst);
    let running = state.stop.lock().map_err(|_| poisoned())?.clone();
    let Some(stop) = running else {
        app.exit(0);
        return Ok(());
    };
    match choice {
        CloseChoice::Background => {
            if let Some(w) = app.get_webview_window("main") {
                w.hide().map_err(|e| {
                    AppError::new(
                        ErrorCode::Io,
                        format!("the window could not be hidden: {e}"),
                    )
                })?;
            }
        }
        CloseChoice::Stop => stop.store(true, Ordering::SeqCst),
    }
    Ok(())
}

/// Stops the running deployment: this window's, or another process's (SIGTERM).
/// The running step is recorded as interrupted.
#[tauri::command]
pub async fn cancel_run(state: State<'_, AppState>) -> Result<bool> {
    if let Some(stop) = state.stop.lock().map_err(|_| poisoned())?.as_ref() {
        stop.store(true, Ordering::SeqCst);
        return Ok(true);
    }
    Ok(ops::request_cancel(&state.store)?.is_some())
}

/// Archives the deployment's progress into history and clears it; keeps inventory
/// and configuration. Returns what was done, in a sentence.
#[tauri::command]
pub async fn clean_state(state: State<'_, AppState>) -> Result<String> {
    let r = ops::clean_state(&state.store, LockWait::NoWait, Timestamp::now())?;
    Ok(crate::clean_message(r.archived_to.as_deref()))
}

#[tauri::command]
pub async fn history(state: State<'_, AppState>) -> Result<HistoryListing> {
    Ok(history::listing(&state.store, Timestamp::now())?)
}

#[tauri::command]
pub async fn run_details(state: State<'_, AppState>, run_id: String) -> Result<RunRecord> {
    find_run(&state, &run_id)
}

#[tauri::command]
pub async fn diff_runs(
    state: State<'_, AppState>,
    run_a: String,
    run_b: String,
) -> Result<RunDiff> {
    let a = find_run(&state, &run_a)?;
    let b = find_run(&state, &run_b)?;
    Ok(history::diff(&a, &b))
}

/// One page of a step attempt's log, read from its file: the end (`before` and
/// `after` unset), the page before offset `before`, or what was printed from offset
/// `after` on. `attempt` unset is the step's last attempt.
#[tauri::command]
pub async fn step_log(
    state: State<'_, AppState>,
    step: String,
    attempt: Option<u32>,
    before: Option<u64>,
    after: Option<u64>,
) -> Result<LogPage> {
    let window = match (before, after) {
        (Some(b), _) => Window::Before(b),
        (None, Some(a)) => Window::After(a),
        (None, None) => Window::Tail,
    };
    let store = state.store.clone();
    blocking(move || {
        Ok(log::page(
            &store,
            &step,
            attempt,
            window,
            log::PAGE_BYTES,
            Timestamp::now(),
        )?)
    })
    .await
}

/// Saves a copy of a step attempt's whole log into the user's download folder (a
/// new file, never one replaced) and says where. `attempt` unset is the last.
#[tauri::command]
pub async fn save_step_log(
    state: State<'_, AppState>,
    step: String,
    attempt: Option<u32>,
) -> Result<SavedLog> {
    let store = state.store.clone();
    blocking(move || {
        let into = thinkube_engine::paths::downloads_folder_from_process()?;
        Ok(log::save_copy(
            &store,
            &step,
            attempt,
            &into,
            Timestamp::now(),
        )?)
    })
    .await
}

/// Every plan to choose from: the built-in ones, and the plan files this environment
/// used (the launch's `--plan` first).
#[tauri::command]
pub async fn plan_choices(state: State<'_, AppState>) -> Result<Vec<PlanChoice>> {
    let also: Vec<&str> = state.launch.plan.as_deref().into_iter().collect();
    Ok(catalog::choices(&state.store, &also, Timestamp::now()))
}

/// What the completed deployment deployed, where and how long it took; `null` until
/// it completed.
#[tauri::command]
pub async fn completion(state: State<'_, AppState>) -> Result<Option<Completion>> {
    Ok(thinkube_engine::report::completion::completion(
        &state.store,
        Timestamp::now(),
    )?)
}

/// Opens a web address from the completion page in the desktop's browser
/// (`xdg-open`); only `http://` and `https://` addresses are opened.
#[tauri::command]
pub fn open_link(url: String) -> Result<()> {
    if !(url.starts_with("http://") || url.starts_with("https://"))
        || url.chars().any(char::is_whitespace)
    {
        return Err(AppError::new(
            ErrorCode::BadInput,
            format!("`{url}` is not a web address; only http:// and https:// addresses are opened"),
        ));
    }
    std::process::Command::new("xdg-open")
        .arg(&url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|mut child| {
            // Reaped when it is done (xdg-open hands the address on and exits).
            std::thread::spawn(move || child.wait());
        })
        .map_err(|e| {
            AppError::new(
                ErrorCode::Io,
                format!("Could not open a browser (xdg-open: {e}); open {url} yourself."),
            )
        })
}

/// How long each step of the current deployment's plan took when it last succeeded.
#[tauri::command]
pub async fn step_timings(state: State<'_, AppState>) -> Result<StepTimings> {
    Ok(history::step_timings(&state.store, Timestamp::now())?)
}

/// Writes the window's browser copy of the state back, when the state file is
/// missing or unreadable. The engine validates it first and moves an unreadable
/// file aside; a readable state is never replaced.
#[tauri::command]
pub async fn restore_mirror(state: State<'_, AppState>, document: String) -> Result<u64> {
    let r = ops::recover(
        &state.store,
        RecoverSource::Document {
            bytes: document.into_bytes(),
            origin: "the installer window's copy".to_string(),
        },
        LockWait::NoWait,
        Timestamp::now(),
    )?;
    Ok(r.serial)
}

/// The cached facts, and what a refresh asked.
#[derive(Debug, Serialize, TS)]
#[ts(export)]
pub struct FactsAnswer {
    pub facts: Vec<FactView>,
    /// One line per source a refresh asked (empty: nothing is configured to ask);
    /// `null` when the facts were not refreshed.
    pub refreshed: Option<Vec<String>>,
}

/// The cached infrastructure facts with their age; `refresh` asks every configured
/// source first (the Terraform state, the hosts' SSH ports, Azure), in one pass.
#[tauri::command]
pub async fn facts(state: State<'_, AppState>, refresh: bool) -> Result<FactsAnswer> {
    let store = state.store.clone();
    let password = state.ssh_password.lock().map_err(|_| poisoned())?.clone();
    // Probes, SSH and Azure wait on the network: off the async runtime's threads.
    blocking(move || {
        let now = Timestamp::now();
        let refreshed = if refresh {
            Some(facts::refresh_configured(
                &store,
                LockWait::NoWait,
                now,
                password.as_deref(),
            )?)
        } else {
            None
        };
        Ok(FactsAnswer {
            facts: facts::cached(&store, now)?.0,
            refreshed,
        })
    })
    .await
}

/// Each SSH host of the configuration being edited: whether it answers, the
/// fingerprint of its key, and whether that key is trusted.
#[tauri::command]
pub async fn host_keys(
    state: State<'_, AppState>,
    config: InstallerConfig,
) -> Result<Vec<HostKeyView>> {
    let home = state.store.layout().home.clone();
    blocking(move || Ok(host_keys::check(&home, &host_keys::config_hosts(&config)))).await
}

/// A host key the user accepted in the window: the host and the fingerprint shown.
#[derive(Debug, Clone, Deserialize, TS)]
#[ts(export)]
pub struct AcceptedKey {
    pub name: String,
    pub fingerprint: String,
}

/// Trusts the keys the user accepted, each only if the host still offers it;
/// returns the hosts as they are now.
#[tauri::command]
pub async fn trust_host_keys(
    state: State<'_, AppState>,
    config: InstallerConfig,
    accepted: Vec<AcceptedKey>,
) -> Result<Vec<HostKeyView>> {
    let home = state.store.layout().home.clone();
    blocking(move || {
        let accepted: Vec<(String, String)> = accepted
            .into_iter()
            .map(|a| (a.name, a.fingerprint))
            .collect();
        Ok(host_keys::trust_accepted(
            &home,
            &host_keys::config_hosts(&config),
            &accepted,
        )?)
    })
    .await
}

/// The pre-flight of the configuration being edited (the review page): each SSH
/// host answers, its key is trusted, the login works, and sudo when the plan
/// becomes root. A password is used only once this window was given it (it asks
/// when a deployment starts); every run checks the same again before any step.
#[tauri::command]
pub async fn preflight(
    state: State<'_, AppState>,
    config: InstallerConfig,
) -> Result<Vec<HostCheck>> {
    let layout = state.store.layout().clone();
    let password = state.ssh_password.lock().map_err(|_| poisoned())?.clone();
    let become_password = state
        .tokens
        .lock()
        .map_err(|_| poisoned())?
        .get(host_keys::BECOME_PASSWORD_ENV)
        .cloned()
        .or_else(|| std::env::var(host_keys::BECOME_PASSWORD_ENV).ok())
        .filter(|p| !p.is_empty());
    blocking(move || {
        // Unknown until the plan loads: then sudo is checked rather than assumed.
        let needs_sudo = PlanRef::parse(Some(&config.plan))
            .and_then(|r| Ok((r.load(&layout.root.join("plans"))?, r)))
            .ok()
            .and_then(|(plan, r)| {
                let choices = plan.choose(&config.flags, &config.vars).ok()?;
                Some(deploy::plan_becomes(&r, &plan, &choices, &layout.home))
            })
            .unwrap_or(true);
        Ok(host_keys::preflight(
            &layout.home,
            &host_keys::config_hosts(&config),
            host_keys::Logins {
                password: password.as_deref(),
                become_password: become_password.as_deref(),
                needs_sudo,
                missing_password: Some(
                    "no key let the login in, and the password is asked for when the deployment starts: the login is checked then",
                ),
            },
        ))
    })
    .await
}

/// One host's hardware as the wizard shows it.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct HostHardware {
    pub name: String,
    pub hardware: HardwareFact,
}

/// Reads the hardware of the configuration's SSH hosts (cores, memory, disk, OS,
/// GPUs) and keeps it as facts with their age; returns what each host said.
#[tauri::command]
pub async fn detect_hardware(
    state: State<'_, AppState>,
    config: InstallerConfig,
) -> Result<Vec<HostHardware>> {
    let store = state.store.clone();
    let password = state.ssh_password.lock().map_err(|_| poisoned())?.clone();
    blocking(move || {
        let now = Timestamp::now();
        let hosts = host_keys::config_hosts(&config);
        let refresh = hardware::gather(
            &store.layout().home,
            &hosts,
            host_keys::Logins {
                password: password.as_deref(),
                ..host_keys::Logins::default()
            },
            now,
        );
        let found = hosts
            .iter()
            .zip(&refresh.facts)
            .map(|(h, f)| HostHardware {
                name: h.name.clone(),
                hardware: serde_json::from_value(f.value.clone()).unwrap_or_default(),
            })
            .collect();
        facts::commit(&store, refresh, LockWait::NoWait, now)?;
        Ok(found)
    })
    .await
}

/// What was compared with reality (the hosts are probed) and every mismatch;
/// `null` when there is no deployment to check.
#[tauri::command]
pub async fn validate(state: State<'_, AppState>) -> Result<Option<Validation>> {
    let store = state.store.clone();
    blocking(move || {
        Ok(validate::check_environment(
            &store,
            facts::PROBE_TIMEOUT,
            Timestamp::now(),
        )?)
    })
    .await
}

/// What this machine needs for the configuration's plan and target (Ansible and the
/// collections, git, the SSH tools, sshpass, room in the home), each checked.
#[tauri::command]
pub async fn machine_requirements(
    state: State<'_, AppState>,
    config: InstallerConfig,
) -> Result<Vec<Requirement>> {
    let layout = state.store.layout().clone();
    blocking(move || {
        let upstream = PlanRef::parse(Some(&config.plan))
            .and_then(|r| r.load(&layout.root.join("plans")))
            .map(|p| p.upstream.is_some())
            // A plan that cannot be read is said on the plan page; check the most.
            .unwrap_or(true);
        let remote = config.target != config::TargetKind::Local;
        let needs = requirements::Needs {
            ssh: remote,
            password: remote && config.ssh_auth == SshAuth::Password,
            upstream,
        };
        Ok(requirements::check(
            &layout.home,
            runner::ansible_override().as_deref(),
            std::env::var_os("PATH").as_deref(),
            needs,
        ))
    })
    .await
}

/// `thinkube-deploy setup` from the window: the pinned ansible-core and the ansible
/// package (its collections) into `<home>/venv`. Takes minutes (about 500 MB).
#[tauri::command]
pub async fn install_ansible(state: State<'_, AppState>) -> Result<String> {
    if state.running() {
        return Err(AppError::new(
            ErrorCode::Busy,
            "A deployment is running with this Ansible: install once it has ended.",
        ));
    }
    let store = state.store.clone();
    blocking(move || {
        let outcome = setup::install_ansible(&store.layout().home, "python3", store.fs())?;
        Ok(match outcome {
            setup::SetupOutcome::AlreadyInstalled(p) => {
                format!("Already installed: {}", p.display())
            }
            setup::SetupOutcome::Installed(p) => format!("Installed: {}", p.display()),
        })
    })
    .await
}

/// The checkout the configuration's plan needs (none for a plan that runs its own
/// playbooks): where, at which commit, and what a run would say of it.
#[tauri::command]
pub async fn source_status(
    state: State<'_, AppState>,
    config: InstallerConfig,
) -> Result<Option<SourceView>> {
    let layout = state.store.layout().clone();
    blocking(move || {
        let plan = PlanRef::parse(Some(&config.plan))?.load(&layout.root.join("plans"))?;
        Ok(source::view(&plan, &config.vars, &layout.home)?)
    })
    .await
}

/// `thinkube-deploy source` from the window: puts the checkout at the plan's pin,
/// cloned from `from` (a URL, or a local clone, mirror or bundle; default the plan's
/// repository). Refused while this window runs a deployment.
#[tauri::command]
pub async fn fetch_source(
    state: State<'_, AppState>,
    plan: String,
    from: Option<String>,
) -> Result<Fetched> {
    if state.running() {
        return Err(AppError::new(
            ErrorCode::Busy,
            "A deployment is running from this checkout: get the checkout once it has ended.",
        ));
    }
    let layout = state.store.layout().clone();
    let from = from.map(|f| f.trim().to_string()).filter(|f| !f.is_empty());
    blocking(move || {
        let plan = PlanRef::parse(Some(&plan))?.load(&layout.root.join("plans"))?;
        Ok(source::fetch(&layout.home, &plan, from.as_deref(), None)?)
    })
    .await
}

/// `thinkube-deploy plan check` from the review page: the configuration's plan with
/// the inventory it would write (saved or not).
#[tauri::command]
pub async fn check_plan(
    state: State<'_, AppState>,
    config: InstallerConfig,
) -> Result<CheckReport> {
    let layout = state.store.layout().clone();
    blocking(move || {
        Ok(plan_check::check_config(
            &layout,
            &config,
            runner::ansible_override().as_deref(),
            &|name| std::env::var_os(name),
        )?)
    })
    .await
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tauri::async_runtime::spawn_blocking(work)
        .await
        .map_err(|e| AppError::new(ErrorCode::Io, format!("The work stopped midway: {e}")))?
}

fn find_run(state: &AppState, run_id: &str) -> Result<RunRecord> {
    Ok(history::find_run(&state.store, run_id, Timestamp::now())?)
}

fn poisoned() -> AppError {
    AppError::new(
        ErrorCode::Busy,
        "An earlier command failed midway; restart the installer.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan's link could be anything its author wrote: only web addresses are
    /// handed to the desktop (not files, not commands, not options for xdg-open).
    #[test]
    fn only_web_addresses_are_opened() {
        for url in [
            "file:///etc/passwd",
            "javascript:alert(1)",
            "--help",
            "/usr/bin/xterm",
            "http://a b/",
        ] {
            let e = open_link(url.into()).expect_err(url);
            assert_eq!(e.code, ErrorCode::BadInput, "{url}");
            assert!(e.message.contains("not a web address"), "{}", e.message);
        }
    }
}
