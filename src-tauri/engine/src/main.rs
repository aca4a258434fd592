//! `thinkube-deploy`: the headless installer. All of it lives in the engine crate.

fn main() -> std::process::ExitCode {
    thinkube_engine::cli::main()
}
