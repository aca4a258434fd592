//! The shared backend's cost (issue #16), against a real Azurite on 127.0.0.1:
//! - a commit: a `deploy` of N command steps (each `true`) through `--backend`,
//!   per step (two commits a step), beside the same deploy on the local store, and
//!   beside a bare conditional PUT (`If-Match`) of the same state's bytes, which is
//!   what each shared commit must at least cost on top of the local one;
//! - `status --json` as a whole process, through the backend and locally.
//!
//! Run: `cargo bench -p thinkube-engine --bench shared` (`SHARED_STEPS=50` by
//! default). The figures go into docs/benchmarks.md.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use thinkube_blob::Condition;
use thinkube_blob::azurite::Azurite;

const BIN: &str = env!("CARGO_BIN_EXE_thinkube-deploy");

fn plan(dir: &Path, steps: usize) -> std::path::PathBuf {
    let mut text = String::from("id: bench-shared\nphases:\n  - id: p\n    steps:\n");
    for i in 0..steps {
        text.push_str(&format!("      - id: s{i}\n        command: [\"true\"]\n"));
    }
    let path = dir.join("plan.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Milliseconds of `thinkube-deploy ARGS` in `home`, through `backend` if given.
fn timed(home: &Path, backend: Option<&str>, args: &[&str]) -> f64 {
    let mut c = Command::new(BIN);
    if let Some(url) = backend {
        c.args(["--backend", url])
            .env("AZURE_STORAGE_KEY", Azurite::key());
    }
    let start = Instant::now();
    let status = c
        .args(args)
        .env("THINKUBE_INSTALLER_HOME", home)
        .env_remove("THINKUBE_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{args:?} failed");
    start.elapsed().as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let steps: usize = std::env::var("SHARED_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let data = tempfile::tempdir().unwrap();
    let azurite = Azurite::start(data.path()).unwrap_or_else(|e| panic!("{e}"));
    let endpoint = azurite.endpoint();
    let url = |r: usize| {
        format!(
            "azblob://{}/bench/b{r}?endpoint={endpoint}",
            thinkube_blob::DEV_ACCOUNT
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path(), steps);
    let plan = plan.to_str().unwrap();
    let _ = Command::new("sync").status();
    let rounds = 5;
    let (mut shared, mut local) = (Vec::new(), Vec::new());
    let (mut status_shared, mut status_local) = (Vec::new(), Vec::new());
    let mut state_bytes = Vec::new();
    for r in 0..rounds {
        let home = dir.path().join(format!("local-{r}"));
        local.push(timed(&home, None, &["deploy", "--plan", plan]) / steps as f64);
        status_local.push(timed(&home, None, &["status", "--json"]));
        let url = url(r);
        let home = dir.path().join(format!("shared-{r}"));
        shared.push(timed(&home, Some(&url), &["deploy", "--plan", plan]) / steps as f64);
        status_shared.push(timed(&home, Some(&url), &["status", "--json"]));
        state_bytes = std::fs::read(home.join("deployment-state.json")).unwrap();
    }
    // The bare conditional PUT of the same bytes, as a commit makes it.
    let client = azurite.client("bench");
    let mut etag = client
        .put("bare.json", state_bytes.clone(), Condition::Any)
        .unwrap();
    let mut bare = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        etag = client
            .put("bare.json", state_bytes.clone(), Condition::Match(&etag))
            .unwrap();
        bare.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let (shared, local, bare) = (median(shared), median(local), median(bare));
    println!(
        "A deploy of {steps} steps, median of {rounds}; the state at its end: {} bytes.\n",
        state_bytes.len()
    );
    println!("| what | ms |");
    println!("|---|---|");
    println!("| a step, local store (two commits) | {local:.2} |");
    println!("| a step, shared on Azurite (two commits) | {shared:.2} |");
    println!(
        "| added per shared commit ((shared - local) / 2) | {:.2} |",
        (shared - local) / 2.0
    );
    println!("| a bare conditional PUT of the same bytes (median of 200) | {bare:.2} |");
    println!("| `status --json`, local | {:.2} |", median(status_local));
    println!(
        "| `status --json`, shared on Azurite | {:.2} |",
        median(status_shared)
    );
}
