//! The engine's cost per step as the plan grows (issue #11): a real `thinkube-deploy
//! deploy` of N command steps that each run `true`, at N = 10, 100, 1,000 and 5,000,
//! timed as a whole and divided by N (the median of at least 3 deploys, more where
//! N is small, so that a row covers at least 2,000 steps; the rows measured in 3
//! turns, so that a disk whose speed drifts weighs on all alike); beside it the floor,
//! measured in this process right after each deploy, over as many rounds, and
//! compared with that deploy (the ratios are medians of these pairs, as the disk's
//! speed drifts during a run): spawning the step and
//! waiting for it, plus two durable replaces of a small file (what the two commits
//! of a step must at least cost: temp file, write, fsync, rename, folder fsync). The
//! floor is given twice: spawning `true` itself, and spawning it as the runner must,
//! with its parent-death signal set by `setpriv --pdeathsig TERM` (run/spawn.rs),
//! which is one more exec.
//!
//! A deploy also has a fixed cost, whatever its size (the process's start, the
//! lock, the first and last whole writes of the state, the run's file): measured
//! as a deploy of one step, and taken out in the "per added step" column, the
//! cost of each step beyond the first ((deploy of N - deploy of 1) / (N - 1)).
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

/// Milliseconds of a whole deploy of `steps` steps in a fresh home, and the state's
/// size at the end.
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
    (elapsed, state_bytes)
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
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // Write back what the build left dirty (an fsync on ext4 can wait for it), and
    // warm the binary and the page cache: the first row measured otherwise pays
    // for both.
    let _ = Command::new("sync").status();
    for _ in 0..5 {
        engine(10);
    }
    // The fixed cost: a deploy of one step.
    let one = median((0..25).map(|_| engine(1).0).collect());
    println!("A deploy of one step: {one:.2} ms (median of 25).\n");
    println!(
        "| plan steps | deploys | state bytes at the end | engine ms/step | per added step | floor ms/step | floor with setpriv | engine / floor | per added step / floor | engine / floor with setpriv |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    // The rows are measured in turns (a few deploys of each size, then again), so
    // that a disk whose speed drifts during the run weighs on every row alike; each
    // deploy is followed by the floors over as many steps, and compared with them.
    let turns = 3;
    let mut rows: Vec<Vec<(f64, f64, Option<f64>)>> = vec![Vec::new(); counts.len()];
    let mut bytes = vec![0; counts.len()];
    for _ in 0..turns {
        for (i, &n) in counts.iter().enumerate() {
            let deploys = (2000 / n).clamp(turns, 25).div_ceil(turns);
            let rounds = n.max(200);
            for _ in 0..deploys {
                let (total, b) = engine(n);
                bytes[i] = b;
                let plain = floor(rounds, None);
                let with_setpriv = setpriv.map(|p| floor(rounds, Some(p)));
                rows[i].push((total, plain, with_setpriv));
            }
        }
    }
    for (i, &n) in counts.iter().enumerate() {
        let (rows, bytes, deploys) = (&rows[i], bytes[i], rows[i].len());
        let per_step = median(rows.iter().map(|r| r.0 / n as f64).collect());
        let added = median(
            rows.iter()
                .map(|r| (r.0 - one) / (n.max(2) - 1) as f64)
                .collect(),
        );
        let plain = median(rows.iter().map(|r| r.1).collect());
        let ratio = median(rows.iter().map(|r| r.0 / n as f64 / r.1).collect());
        let added_ratio = median(
            rows.iter()
                .map(|r| (r.0 - one) / (n.max(2) - 1) as f64 / r.1)
                .collect(),
        );
        let (sp, sp_ratio) = match setpriv {
            Some(_) => (
                format!("{:.2}", median(rows.iter().filter_map(|r| r.2).collect())),
                format!(
                    "{:.2}",
                    median(
                        rows.iter()
                            .filter_map(|r| r.2.map(|f| r.0 / n as f64 / f))
                            .collect()
                    )
                ),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {n} | {deploys} | {bytes} | {per_step:.2} | {added:.2} | {plain:.2} | {sp} | {ratio:.2} | {added_ratio:.2} | {sp_ratio} |"
        );
    }
}
