//! A real `thinkube-deploy deploy` of many fast command steps, SIGKILLed at random
//! moments 200 times. After each kill: the state parses, the serial never went back,
//! every step the process reported completed is still completed, nothing shows as
//! running once its process is gone, and temporary files do not pile up. Then the
//! deployment resumes and finishes.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::common::*;

/// Kills in CI; `THINKUBE_KILLS` raises it for a longer run by hand.
fn kills() -> usize {
    std::env::var("THINKUBE_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(200)
}
/// Enough steps that the kills end before the deployment does.
fn steps() -> usize {
    (kills() * 3 / 2).max(300)
}

fn random_below(n: u128) -> u128 {
    uuid::Uuid::new_v4().as_u128() % n
}

#[test]
fn sigkill_of_deploy_at_random_moments_loses_nothing_acknowledged() {
    let home = Home::new();
    let mut text = String::from("id: many\nphases:\n  - id: p\n    steps:\n");
    for i in 0..steps() {
        text.push_str(&format!(
            "      - id: s{i:05}\n        command: [\"true\"]\n"
        ));
    }
    let dir = plan_dir(&home, &[("plan.yaml", &text)]);
    let plan = dir.join("plan.yaml");
    let mut completed: BTreeSet<String> = BTreeSet::new();
    let mut last_serial = 0u64;
    for kill in 0..kills() {
        let mut child = home
            .command(&["deploy", "--plan", plan.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for _ in 0..random_below(6) {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(step) = line.trim().strip_prefix("✓ ") {
                        completed.insert(step.to_string());
                    }
                }
                _ => break,
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if !home.state_file().exists() {
            assert!(completed.is_empty(), "kill {kill}: the state vanished");
            continue;
        }
        let v = home.status_json();
        let serial = v["serial"].as_u64().unwrap();
        assert!(
            serial >= last_serial,
            "kill {kill}: serial went back from {last_serial} to {serial}"
        );
        last_serial = serial;
        let steps = v["steps"].as_array().unwrap();
        for s in steps {
            let id = s["id"].as_str().unwrap();
            if completed.contains(id) {
                assert_eq!(
                    s["status"], "completed",
                    "kill {kill}: step {id} was reported completed"
                );
            }
        }
        let temps = std::fs::read_dir(home.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .count();
        assert!(temps <= 2, "kill {kill}: {temps} temporary files pile up");
    }
    // Let it finish.
    let r = home.run(&["deploy", "--plan", plan.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = home.status_json();
    assert_eq!(v["deployment"]["status"], "completed");
    assert_eq!(v["progress"]["completed"], steps() as u64);
    assert!(v["serial"].as_u64().unwrap() >= last_serial);
    let temps = std::fs::read_dir(home.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .count();
    assert_eq!(temps, 0, "the last writer leaves no temporary files");
}
