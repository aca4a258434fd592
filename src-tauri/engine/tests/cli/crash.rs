//! A child commits changes in a loop and prints each serial after it is committed;
//! the parent SIGKILLs it at random moments. After every kill the state parses, the
//! serial never went back, no acknowledged change is lost, nothing is left running,
//! and the next writer carries on to the end.

use thinkube_engine::state::model::StepStatus;
use thinkube_engine::timestamp::Timestamp;

use crate::child::{CRASH_STEPS, ChildProc};
use crate::common::*;

fn random_below(n: u128) -> u128 {
    uuid::Uuid::new_v4().as_u128() % n
}

#[test]
fn sigkill_at_random_moments_never_loses_an_acknowledged_commit() {
    let home = Home::new();
    let store = home.store();
    let mut last_serial = 0u64;
    let mut acknowledged: Vec<String> = Vec::new();
    let mut kills = 0;
    for _ in 0..40 {
        let mut child = ChildProc::spawn(&home, "commit-loop");
        let wait_for = random_below(12);
        let mut finished = false;
        for _ in 0..wait_for {
            match child.next_line() {
                Some(line) if line == "done" => {
                    finished = true;
                    break;
                }
                Some(line) => {
                    let mut parts = line.split(' ');
                    match parts.next() {
                        Some("serial") => {
                            last_serial = last_serial.max(parts.next().unwrap().parse().unwrap())
                        }
                        Some("completed") => {
                            acknowledged.push(parts.next().unwrap().to_string());
                            last_serial = last_serial.max(parts.next().unwrap().parse().unwrap());
                        }
                        _ => panic!("unexpected line {line}"),
                    }
                }
                None => break,
            }
        }
        child.kill();
        kills += 1;
        if finished {
            break;
        }
        let Some(loaded) = store
            .load(Timestamp::now())
            .expect("the state parses after a kill")
        else {
            // Killed before its first commit: then nothing was acknowledged either.
            assert_eq!(last_serial, 0, "an acknowledged state vanished");
            continue;
        };
        let state = loaded.state;
        assert!(
            state.serial >= last_serial,
            "serial went back: {} < acknowledged {last_serial}",
            state.serial
        );
        last_serial = state.serial;
        for step in &acknowledged {
            assert_eq!(
                state.deployment.step(step).map(|s| s.status),
                Some(StepStatus::Completed),
                "acknowledged step {step} lost"
            );
        }
        // As the next process will see it: nothing running.
        let v = home.status_json();
        assert_eq!(
            v["progress"]["running"], 0,
            "a dead process's step still shows running"
        );
    }
    assert!(kills >= 10);
    // Let it finish.
    let mut child = ChildProc::spawn(&home, "commit-loop");
    while let Some(line) = child.next_line() {
        if line == "done" {
            break;
        }
    }
    child.kill();
    let v = home.status_json();
    assert_eq!(v["deployment"]["status"], "completed");
    assert_eq!(v["progress"]["completed"], CRASH_STEPS as u64);
    // Interrupted attempts are kept as history of the steps that were cut short.
    let state = store.load(Timestamp::now()).unwrap().unwrap().state;
    assert!(state.serial >= last_serial);
    let leftovers: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .map(|e| e.file_name())
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files pile up: {leftovers:?}"
    );
}
