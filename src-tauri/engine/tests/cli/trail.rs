//! The audit trail: sequence numbers, a torn last line dropped and reported, lost
//! last events re-appended from the state, and `events --follow`.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use thinkube_engine::state::lock::LockWait;
use thinkube_engine::state::model::{EventKind, NewEvent};

use crate::common::*;

fn events(home: &Home) -> Vec<serde_json::Value> {
    home.run(&["events", "--json"])
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn events_are_numbered_in_order_and_filtered_by_run() {
    let home = Home::new();
    let store = home.store();
    let a = run_deployment(
        &store,
        &[("a", "p")],
        Some("a"),
        &[],
        at("2026-01-01T00:00:00Z"),
    );
    let b = run_deployment(&store, &[("a", "p")], None, &[], at("2026-01-02T00:00:00Z"));
    let all = events(&home);
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let only_b = home.run(&["events", "--json", "--run", &b]).stdout;
    assert!(only_b.contains(&b) && !only_b.contains(&a), "{only_b}");
    let human = home.run(&["events"]).stdout;
    assert!(
        human.contains("run_finished") && human.contains(&format!("(run {a})")),
        "{human}"
    );
}

#[test]
fn a_torn_last_line_is_skipped_reported_and_dropped_by_the_next_writer() {
    let home = Home::new();
    one_completed_step(&home);
    let path = home.layout().events_file();
    let good = std::fs::read(&path).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(br#"{"seq": 99, "at": "2026-01-0"#).unwrap();
    drop(f);
    let r = home.run(&["events"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stderr.contains("last line") && r.stderr.contains("incomplete"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stdout.lines().count(),
        good.iter().filter(|b| **b == b'\n').count()
    );
    assert_eq!(home.run(&["clean-state", "--yes"]).code, 0);
    let after = std::fs::read(&path).unwrap();
    assert!(after.starts_with(&good) && after.ends_with(b"\n"));
    let kinds: Vec<String> = events(&home)
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(kinds.contains(&"trail_repaired".to_string()), "{kinds:?}");
    assert!(home.run(&["events"]).stderr.is_empty());
}

#[test]
fn events_of_the_last_commit_lost_in_a_crash_are_written_again() {
    let home = Home::new();
    let store = home.store();
    run_deployment(&store, &[("a", "p")], None, &[], at("2026-01-01T00:00:00Z"));
    let path = home.layout().events_file();
    let full = std::fs::read(&path).unwrap();
    // Drop the last line, as if the process died between the commit and the append.
    let cut = full[..full.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    std::fs::write(&path, &full[..cut]).unwrap();
    let w = store
        .open_writer("t", LockWait::NoWait, at("2026-01-03T00:00:00Z"))
        .unwrap();
    w.finish().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), full);
}

#[test]
fn events_follow_prints_new_events_as_they_are_committed() {
    let home = Home::new();
    let store = home.store();
    run_deployment(&store, &[("a", "p")], None, &[], at("2026-01-01T00:00:00Z"));
    let mut follower = home
        .command(&["events", "--follow", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["seq"], 1);
    let already = events(&home).len();
    for _ in 1..already {
        lines.next().unwrap().unwrap();
    }
    let mut w = store
        .open_writer("t", LockWait::NoWait, at("2026-01-03T00:00:00Z"))
        .unwrap();
    w.commit(
        at("2026-01-03T00:00:00Z"),
        vec![NewEvent::new(EventKind::FactsUpdated, "hello follower")],
        |_| Ok(()),
    )
    .unwrap();
    w.finish().unwrap();
    let next: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(next["message"], "hello follower");
    let _ = follower.kill();
    let _ = follower.wait();
}
