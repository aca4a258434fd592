//! Embeds tauri.conf.json, the capabilities and the built UI (ui/dist) into the app,
//! and declares the app's commands so each gets a permission of its own.

/// Every command the page may call; `capabilities/main.json` grants each one to the
/// main window and nothing else.
const COMMANDS: &[&str] = &[
    "launch_info",
    "get_state",
    "backend_retry",
    "load_config",
    "check_config",
    "save_config",
    "plan_show",
    "start_run",
    "run_tokens",
    "machine_requirements",
    "install_ansible",
    "source_status",
    "fetch_source",
    "check_plan",
    "forget_tokens",
    "cancel_run",
    "clean_state",
    "history",
    "run_details",
    "diff_runs",
    "restore_mirror",
    "facts",
    "validate",
    "host_keys",
    "trust_host_keys",
    "preflight",
    "detect_hardware",
    "step_log",
    "save_step_log",
    "step_timings",
    "window_notices",
    "close_window",
    "plan_choices",
    "completion",
    "open_link",
];

fn main() {
    // The UI is built by `npm run build`; an empty folder lets the crate compile
    // (for clippy and unit tests) before it has been built.
    let dist = std::path::Path::new("../ui/dist");
    if !dist.exists() {
        std::fs::create_dir_all(dist).expect("create ../ui/dist");
    }
    println!("cargo:rerun-if-changed=../ui/dist");
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .codegen(tauri_build::CodegenContext::new())
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .expect("tauri-build failed");
}
