//! The Thinkube Installer desktop app: launch flags, then either the headless CLI
//! (a subcommand) or the window. Glue only: every decision is the engine's
//! (`thinkube_engine`), every pixel the UI's (`ui/`). See docs/architecture.md.

pub mod commands;
pub mod error;
pub mod instance;
pub mod keyring;
pub mod launch;
pub mod notify;
pub mod snapshot;
pub mod worker;

#[cfg(test)]
mod bindings;
#[cfg(test)]
mod test_plan;

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use clap::Parser;
use thinkube_engine::error::exit;
use thinkube_engine::paths::{EnvName, Layout, installer_home_from_process};
use thinkube_engine::plan::builtin::{self, PlanRef};
use thinkube_engine::state::lock::{Identity, LockWait};
use thinkube_engine::state::store::Store;
use thinkube_engine::timestamp::Timestamp;

use crate::error::AppError;
use crate::launch::{Launch, LaunchInfo};

/// Name and version, as recorded in lock info and runs.
pub const PROGRAM: &str = concat!("thinkube-installer ", env!("CARGO_PKG_VERSION"));

/// What the commands share.
pub struct AppState {
    pub store: Store,
    pub launch: LaunchInfo,
    /// Set while a deployment started from this window runs: its stop flag.
    pub stop: Mutex<Option<Arc<AtomicBool>>>,
    /// The SSH password, once given: in memory only, for the life of the window.
    pub ssh_password: Mutex<Option<String>>,
    /// Tokens given in this window (never written anywhere).
    pub tokens: Mutex<std::collections::BTreeMap<String, String>>,
    /// Where the page hears about its window (a close asked for during a run).
    pub notices: Mutex<Option<tauri::ipc::Channel<commands::WindowNotice>>>,
    /// The window was closed during a run: the app exits when the run ends.
    pub exit_when_done: AtomicBool,
    /// Where a second app asks for this window (taken when the window opens).
    listener: Mutex<Option<UnixListener>>,
    _instance: instance::InstanceLock,
}

impl AppState {
    pub fn running(&self) -> bool {
        self.stop.lock().is_ok_and(|s| s.is_some())
    }
}

/// Shows the window (hidden while a run finishes in the background) in front; the
/// user is back, so the app no longer exits when the run ends.
fn bring_forward(app: &tauri::AppHandle) {
    use tauri::Manager;
    app.state::<AppState>()
        .exit_when_done
        .store(false, Ordering::SeqCst);
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}

/// A close asked for (the window's close button) while a deployment runs is held,
/// and the page asks what to do; otherwise the window closes.
fn on_window_event(window: &tauri::Window, event: &tauri::WindowEvent) {
    use tauri::Manager;
    let tauri::WindowEvent::CloseRequested { api, .. } = event else {
        return;
    };
    let state = window.state::<AppState>();
    if !state.running() {
        return;
    }
    let notices = state.notices.lock().ok().and_then(|n| n.clone());
    if let Some(channel) = notices
        && channel.send(commands::WindowNotice::CloseRequested).is_ok()
    {
        api.prevent_close();
    }
}

/// `clean-state`'s result in a sentence.
pub fn clean_message(archived_to: Option<&Path>) -> String {
    match archived_to {
        Some(p) => format!(
            "Progress archived to {} and cleared; inventory and configuration kept.",
            p.display()
        ),
        None => "There was no progress to clear.".to_string(),
    }
}

/// Parses the launch flags; runs the subcommand headless, or opens the window.
pub fn run() -> ExitCode {
    let launch = Launch::parse();
    if let Some(command) = launch.command {
        let cli = thinkube_engine::cli::Cli {
            global: launch.global,
            command,
        };
        return ExitCode::from(thinkube_engine::cli::run_and_report(cli));
    }
    match prepare(launch) {
        Ok(state) => open_window(state),
        // The window already open was brought forward: nothing went wrong.
        Err((exit::SUCCESS, message)) => {
            println!("thinkube-installer: {message}");
            ExitCode::SUCCESS
        }
        Err((code, message)) => {
            eprintln!("thinkube-installer: {message}");
            ExitCode::from(code)
        }
    }
}

/// Everything that happens before the window: flags checked, the environment
/// claimed for this window, `--clean-state` applied.
fn prepare(launch: Launch) -> Result<AppState, (u8, String)> {
    let bad = |e: thinkube_engine::EngineError| (e.exit_code(), e.to_string());
    let env = match &launch.global.env {
        Some(name) => EnvName::parse(name).map_err(bad)?,
        None => EnvName::default_env(),
    };
    let layout = Layout::new(installer_home_from_process().map_err(bad)?, env);
    if let Some(spec) = &launch.plan {
        PlanRef::parse(Some(spec))
            .and_then(|p| p.load(&layout.root.join("plans")))
            .map_err(bad)?;
    }
    // `--backend URL` / THINKUBE_STATE_BACKEND: the state and lock shared
    // (docs/shared-state.md); the window shows the backend and who holds it.
    let shared = match &launch.global.backend {
        Some(url) => thinkube_engine::state::shared::Shared::parse(url, &layout.env, &|name| {
            std::env::var(name).ok()
        })
        .map_err(bad)?,
        None => None,
    };
    let store = Store::new(layout.clone(), Identity::new(PROGRAM)).with_shared(shared);
    let mut instance = instance::acquire(&layout, store.fs()).map_err(|e| match e {
        instance::InstanceError::Taken { ref pid, ref env } => {
            match instance::ask_to_show(&layout) {
                Ok(()) => (
                    exit::SUCCESS,
                    format!(
                        "the installer window (pid {pid}) already open on environment `{env}` was brought forward"
                    ),
                ),
                Err(why) => (
                    exit::LOCKED,
                    format!("{e}; it could not be brought forward: {why}"),
                ),
            }
        }
        instance::InstanceError::Io { .. } => (exit::FAILED, e.to_string()),
    })?;
    let listener = instance.listener.take();
    let (clean_state_result, clean_state_error) = if launch.clean_state {
        match thinkube_engine::state::ops::clean_state(&store, LockWait::NoWait, Timestamp::now()) {
            Ok(r) => (Some(clean_message(r.archived_to.as_deref())), None),
            Err(e) => (None, Some(AppError::from(e))),
        }
    } else {
        (None, None)
    };
    let launch_info = LaunchInfo {
        skip_config: launch.skip_config,
        clean_state: launch.clean_state,
        clean_state_result,
        clean_state_error,
        environment: layout.env.to_string(),
        home: layout.home.display().to_string(),
        plan: launch.plan,
        builtin_plans: builtin::names().into_iter().map(String::from).collect(),
        program: PROGRAM.to_string(),
    };
    Ok(AppState {
        store,
        launch: launch_info,
        stop: Mutex::new(None),
        ssh_password: Mutex::new(None),
        tokens: Mutex::new(Default::default()),
        notices: Mutex::new(None),
        exit_when_done: AtomicBool::new(false),
        listener: Mutex::new(listener),
        _instance: instance,
    })
}

fn open_window(state: AppState) -> ExitCode {
    let result = tauri::Builder::default()
        .manage(state)
        .invoke_handler(tauri::generate_handler![
            commands::launch_info,
            commands::get_state,
            commands::backend_retry,
            commands::load_config,
            commands::check_config,
            commands::save_config,
            commands::plan_show,
            commands::start_run,
            commands::run_tokens,
            commands::machine_requirements,
            commands::install_ansible,
            commands::source_status,
            commands::fetch_source,
            commands::check_plan,
            commands::forget_tokens,
            commands::cancel_run,
            commands::clean_state,
            commands::history,
            commands::run_details,
            commands::diff_runs,
            commands::restore_mirror,
            commands::facts,
            commands::validate,
            commands::host_keys,
            commands::trust_host_keys,
            commands::preflight,
            commands::detect_hardware,
            commands::step_log,
            commands::save_step_log,
            commands::step_timings,
            commands::plan_choices,
            commands::completion,
            commands::open_link,
            commands::window_notices,
            commands::close_window,
        ])
        .on_window_event(on_window_event)
        .setup(|app| {
            // Declared with `create: false` so that nothing shows before the launch
            // flags have been applied (above).
            let config = app
                .config()
                .app
                .windows
                .first()
                .ok_or("tauri.conf.json declares no window")?
                .clone();
            tauri::WebviewWindowBuilder::from_config(app.handle(), &config)?.build()?;
            use tauri::Manager;
            let listener = app
                .state::<AppState>()
                .listener
                .lock()
                .ok()
                .and_then(|mut l| l.take());
            if let Some(listener) = listener {
                let handle = app.handle().clone();
                instance::serve(listener, move || bring_forward(&handle));
            }
            Ok(())
        })
        .run(tauri::tauri_build_context!());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "thinkube-installer: the window could not open: {e}. Without a display, use a subcommand (see --help) or `thinkube-deploy`."
            );
            ExitCode::from(exit::FAILED)
        }
    }
}

#[cfg(test)]
mod command_permissions {
    //! A command the page calls must be registered, declared in build.rs (which makes
    //! its permission) and granted in capabilities/main.json; a command missing from
    //! either list is refused at run time ("not allowed. Command not found"), which no
    //! unit test of the page can see.

    fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
        let from = text.find(start).expect(start) + start.len();
        let to = text[from..].find(end).expect(end) + from;
        &text[from..to]
    }

    #[test]
    fn every_registered_command_is_declared_and_granted_and_nothing_else() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let read = |p: &str| std::fs::read_to_string(dir.join(p)).expect(p);
        let lib = read("src/lib.rs");
        let mut registered: Vec<String> = between(&lib, "generate_handler![", "]")
            .split(',')
            .filter_map(|s| s.trim().strip_prefix("commands::").map(str::to_string))
            .collect();
        let build = read("build.rs");
        let mut declared: Vec<String> = between(&build, "const COMMANDS: &[&str] = &[", "];")
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let caps: serde_json::Value =
            serde_json::from_str(&read("capabilities/main.json")).unwrap();
        let mut granted: Vec<String> = caps["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| {
                p.as_str()?
                    .strip_prefix("allow-")
                    .map(|c| c.replace('-', "_"))
            })
            .collect();
        registered.sort();
        declared.sort();
        granted.sort();
        assert!(registered.len() > 10, "{registered:?}");
        assert_eq!(
            declared, registered,
            "build.rs COMMANDS and the invoke handler"
        );
        assert_eq!(
            granted, registered,
            "capabilities/main.json and the invoke handler"
        );
    }
}
