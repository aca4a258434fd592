//! `thinkube-deploy status --json` as a whole process, with a history of 10,000 runs
//! and 1,000,000 events (and with none, to show it is flat in history size).
//! Run: `cargo bench -p thinkube-engine --bench status`.

mod history;

use std::process::Command;
use std::time::Instant;

const SAMPLES: usize = 100;

fn time_status(home: &std::path::Path) -> (f64, f64) {
    let bin = env!("CARGO_BIN_EXE_thinkube-deploy");
    let run = || {
        let out = Command::new(bin)
            .args(["status", "--json"])
            .env("THINKUBE_INSTALLER_HOME", home)
            .output()
            .unwrap();
        assert!(out.status.success());
    };
    run(); // warm the page cache
    let samples = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    history::summary(samples)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("status --json as a whole process ({SAMPLES} runs each; milliseconds)");
    println!("| runs of history | events | median | p99 |");
    println!("|---|---|---|---|");
    for (runs, events) in [(0, 0), (10_000, 1_000_000)] {
        let dir = tempfile::tempdir().unwrap();
        history::start_deployment(dir.path(), 40);
        history::add_history(dir.path(), runs, events);
        let (median, p99) = time_status(dir.path());
        println!("| {runs} | {events} | {median:.2} | {p99:.2} |");
    }
}
