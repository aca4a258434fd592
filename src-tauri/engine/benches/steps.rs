//! The engine's cost per step as the plan grows (issue #11): a real `thinkube-deploy
//! deploy` of N command steps that each run `true`, at N = 10, 100, 1,000 and 5,000,
//! timed as a whole and divided by N (the median of several deploys where N is
//! small, so that every row covers at least 2,000 steps); beside it the floor,
//! measured the same way in this process, right after: spawning the step and
//! waiting for it, plus two durable replaces of a small file (what the two commits
//! of a step must at least cost: temp file, write, fsync, rename, folder fsync). The
//! floor is given twice: spawning `true` itself, and spawning it as the runner must,
//! with its parent-death signal set by `setpriv --pdeathsig TERM` (run/spawn.rs),
//! which is one more exec.
//!
//! Targets: the cost per step flat from 10 to 5,000 steps (within 1.3x), and within
//! 2x of the floor. Run: `cargo bench -p thinkube-engine --bench steps` (set
//! `STEP_COUNTS=10,100` for a shorter run). The figures go into docs/benchmarks.md.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

fn plan(dir: &Path, steps: usize) -> std::path::PathBuf {
    let mut text = String::from("id: bench-steps\nphases:\n  - id: p\n    steps:\n");
    for i in 0..steps {
        text.push_str(&format!("      - id: s{i}\n        command: [\"true\"]\n"));
    }
    let path = dir.join("plan.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Milliseconds per step of a whole deploy of `steps` steps in a fresh home.
fn engine(steps: usize) -> (f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path(), steps);
    let home = dir.path().join("home");
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_thinkube-deploy"))
        .args(["deploy", "--plan"])
        .arg(&plan)
        .env("THINKUBE_INSTALLER_HOME", &home)
        .env_remove("THINKUBE_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let elapsed = start.elapsed().as_secs_f64() * 1000.0;
    assert!(status.success(), "the deploy of {steps} steps failed");
    let state_bytes = std::fs::metadata(home.join("deployment-state.json"))
        .map(|m| m.len())
        .unwrap_or(0);
    (elapsed / steps as f64, state_bytes)
}

fn durable_replace(dir: &Path, bytes: &[u8]) {
    let tmp = dir.join(".tmp-floor");
    let mut f = std::fs::File::create(&tmp).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(&tmp, dir.join("floor.json")).unwrap();
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
}

/// Milliseconds per step of the floor, over `steps` rounds; through `setpriv` when given.
fn floor(steps: usize, setpriv: Option<&str>) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let change = vec![b'x'; 2048];
    let start = Instant::now();
    for _ in 0..steps {
        let mut command = match setpriv {
            Some(setpriv) => {
                let mut c = Command::new(setpriv);
                c.args(["--pdeathsig", "TERM", "true"]);
                c
            }
            None => Command::new("true"),
        };
        let ok = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .status()
            .unwrap()
            .success();
        assert!(ok);
        durable_replace(dir.path(), &change);
        durable_replace(dir.path(), &change);
    }
    start.elapsed().as_secs_f64() * 1000.0 / steps as f64
}

fn main() {
    let counts: Vec<usize> = std::env::var("STEP_COUNTS")
        .unwrap_or_else(|_| "10,100,1000,5000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    println!(
        "| plan steps | deploys | state bytes at the end | engine ms/step | floor ms/step | engine / floor | floor with setpriv | engine / floor with setpriv |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut first = None;
    for n in counts {
        let deploys = (2000 / n).clamp(1, 25);
        let mut per_step = Vec::new();
        let mut bytes = 0;
        for _ in 0..deploys {
            let (ms, b) = engine(n);
            per_step.push(ms);
            bytes = b;
        }
        per_step.sort_by(f64::total_cmp);
        let per_step = per_step[per_step.len() / 2];
        let rounds = n.clamp(500, 1000);
        let plain = floor(rounds, None);
        let with_setpriv = setpriv.map(|p| floor(rounds, Some(p)));
        first.get_or_insert(per_step);
        let (sp, sp_ratio) = match with_setpriv {
            Some(f) => (format!("{f:.2}"), format!("{:.2}", per_step / f)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {n} | {deploys} | {bytes} | {per_step:.2} | {plain:.2} | {:.2} | {sp} | {sp_ratio} |",
            per_step / plain
        );
    }
    if let Some(first) = first {
        println!(
            "\n(per-step cost relative to the smallest plan: divide each row's engine ms/step by {first:.2})"
        );
    }
}
