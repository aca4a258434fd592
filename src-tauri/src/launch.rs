//! Launch flags, parsed with clap before Tauri starts (so `--help`, `--version` and
//! a wrong flag work without a display), and what the window is told about them.

use clap::Parser;
use serde::Serialize;
use thinkube_engine::cli::{Command, GlobalArgs};
use ts_rs::TS;

use crate::error::AppError;

#[derive(Debug, Parser)]
#[command(
    name = "thinkube-installer",
    version,
    about = "Thinkube Installer: the desktop app. With a subcommand it runs headless, exactly like thinkube-deploy.",
    long_about = "Thinkube Installer: the desktop app. With a subcommand it runs headless, exactly like thinkube-deploy, and opens no window.\n\nState lives in $THINKUBE_INSTALLER_HOME (default ~/.thinkube-installer)."
)]
pub struct Launch {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Go straight to the Deploy screen with the saved inventory
    #[arg(long)]
    pub skip_config: bool,
    /// Before the window opens: archive the deployment's progress into history and
    /// clear it (and the window's copy); inventory and configuration are kept
    #[arg(long)]
    pub clean_state: bool,
    /// Plan file or built-in plan name for a new deployment (default: the saved
    /// configuration's, else demo)
    #[arg(long, value_name = "PATH|NAME")]
    pub plan: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What the window needs to know about how it was launched.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct LaunchInfo {
    pub skip_config: bool,
    pub clean_state: bool,
    /// What `--clean-state` did, in a sentence (set when it was given and worked).
    pub clean_state_result: Option<String>,
    /// Why `--clean-state` could not clear the progress (another process held it).
    pub clean_state_error: Option<AppError>,
    pub environment: String,
    pub home: String,
    /// `--plan`, when given.
    pub plan: Option<String>,
    /// The plans built into the installer, by name.
    pub builtin_plans: Vec<String>,
    /// `thinkube-installer 0.1.0`.
    pub program: String,
}
