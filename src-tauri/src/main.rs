//! The `thinkube-installer` binary: the desktop app, or the headless CLI when given a
//! subcommand.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() -> std::process::ExitCode {
    thinkube_installer::run()
}
