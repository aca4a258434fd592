//! Cost of committing one change, beside the physical limit: the bare durable write
//! (temp file, write, fsync, rename, folder fsync) of the same bytes, and beside the
//! `atomicwrites` crate. At 10, 1,000 and 10,000 runs of history, and for plans of
//! 10, 100 and 1,000 steps. Run: `cargo bench -p thinkube-engine --bench commit`.
//! Results go into docs/benchmarks.md.

mod history;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

use thinkube_engine::state::lifecycle::AnyDeployment;
use thinkube_engine::state::lock::LockWait;
use thinkube_engine::state::model::{EventKind, NewEvent, StepStatus};
use thinkube_engine::timestamp::Timestamp;

const SAMPLES: usize = 400;

/// The physical limit: the same bytes, written durably with nothing else.
fn bare_durable_write(dir: &Path, bytes: &[u8]) {
    let tmp = dir.join(".bare.tmp");
    let target = dir.join("bare.json");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
    drop(f);
    std::fs::rename(&tmp, &target).unwrap();
    File::open(dir).unwrap().sync_all().unwrap();
}

/// Terraform's local backend: the whole file rewritten in place (truncate, write,
/// fsync). Not atomic: a crash mid-write leaves a torn file.
fn in_place_rewrite(dir: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("in-place.json"))
        .unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

/// Pulumi's file backend: the whole snapshot written per step, without fsync. Not
/// durable: a power loss can lose acknowledged steps.
fn unsynced_rewrite(dir: &Path, bytes: &[u8]) {
    std::fs::write(dir.join("unsynced.json"), bytes).unwrap();
}

fn atomicwrites_write(dir: &Path, bytes: &[u8]) {
    let f = atomicwrites::AtomicFile::new(dir.join("aw.json"), atomicwrites::AllowOverwrite);
    f.write(|file| file.write_all(bytes)).unwrap();
}

/// Measures commits of real step transitions on a deployment of `steps` steps with
/// `runs` runs of history, and the bare writes of the committed bytes. When the
/// deployment completes it is cleaned and started again, untimed.
fn measure(steps: usize, runs: usize) -> [(f64, f64); 5] {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    history::start_deployment(home, steps);
    history::add_history(home, runs, runs * 100);
    let store = history::store(home);
    let mut commits = Vec::with_capacity(SAMPLES);
    let mut bare = Vec::with_capacity(SAMPLES);
    let mut aw = Vec::with_capacity(SAMPLES);
    let mut in_place = Vec::with_capacity(SAMPLES);
    let mut unsynced = Vec::with_capacity(SAMPLES);
    while commits.len() < SAMPLES {
        let mut w = store
            .open_writer("bench", LockWait::NoWait, Timestamp::now())
            .unwrap();
        loop {
            let now = Timestamp::now();
            let mut d = match AnyDeployment::from_record(w.state().deployment.clone()).unwrap() {
                AnyDeployment::InProgress(d) => d,
                AnyDeployment::Interrupted(d) => d.resume(),
                other => panic!("unexpected {:?}", other.status()),
            };
            let running = d
                .record()
                .steps
                .iter()
                .find(|s| s.status == StepStatus::Running)
                .map(|s| s.id.clone());
            let step = match (&running, d.next_runnable()) {
                (Some(r), _) => {
                    d.complete_step(r, now).unwrap();
                    r.clone()
                }
                (None, Some(next)) => {
                    let id = next.id.clone();
                    d.start_step(&id, "run", None, None, now).unwrap();
                    id
                }
                (None, None) => break,
            };
            let rec = d.erase().into_record();
            let t = Instant::now();
            w.commit(
                now,
                vec![NewEvent::new(EventKind::StepStarted, "bench").step(&step)],
                |s| {
                    s.deployment = rec;
                    Ok(())
                },
            )
            .unwrap();
            commits.push(t.elapsed().as_secs_f64() * 1e6);
            // Interleaved, so both see the same disk conditions: the same bytes,
            // written bare, then with the atomicwrites crate.
            let bytes = std::fs::read(store.layout().state_file()).unwrap();
            let t = Instant::now();
            bare_durable_write(home, &bytes);
            bare.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            atomicwrites_write(home, &bytes);
            aw.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            in_place_rewrite(home, &bytes);
            in_place.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            unsynced_rewrite(home, &bytes);
            unsynced.push(t.elapsed().as_secs_f64() * 1e6);
            if commits.len() == SAMPLES {
                break;
            }
        }
        w.finish().unwrap();
        if commits.len() < SAMPLES {
            thinkube_engine::state::ops::clean_state(&store, LockWait::NoWait, Timestamp::now())
                .unwrap();
            history::start_deployment(home, steps);
        }
    }
    [
        history::summary(commits),
        history::summary(bare),
        history::summary(aw),
        history::summary(in_place),
        history::summary(unsynced),
    ]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; there is nothing to list here
    }
    println!(
        "commit of one change vs the bare durable write of the same bytes ({SAMPLES} samples each; microseconds)"
    );
    println!(
        "| plan steps | runs of history | state bytes | commit median | commit p99 | bare median | bare p99 | ratio (median) | atomicwrites median | in place (Terraform local) | unsynced (Pulumi file) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (steps, runs) in [
        (40, 10),
        (40, 1_000),
        (40, 10_000),
        (10, 10),
        (100, 10),
        (1_000, 10),
    ] {
        let [c, b, a, ip, un] = measure(steps, runs);
        let dir = tempfile::tempdir().unwrap();
        history::start_deployment(dir.path(), steps);
        let size = std::fs::metadata(dir.path().join("deployment-state.json"))
            .unwrap()
            .len();
        println!(
            "| {steps} | {runs} | {size} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.0} |",
            c.0,
            c.1,
            b.0,
            b.1,
            c.0 / b.0,
            a.0,
            ip.0,
            un.0
        );
    }
}
