//! `recover`: an unreadable state is moved aside (never deleted) and replaced by a
//! good copy; a readable one is never touched.

use crate::common::*;

fn with_history_then_garbage() -> (Home, u64) {
    let home = Home::new();
    let store = home.store();
    run_deployment(
        &store,
        &[("a", "p"), ("b", "p")],
        Some("b"),
        &[],
        at("2026-01-01T00:00:00Z"),
    );
    run_deployment(
        &store,
        &[("a", "p"), ("b", "p")],
        None,
        &[],
        at("2026-01-02T00:00:00Z"),
    );
    let serial = home.status_json()["serial"].as_u64().unwrap();
    let mut bytes = std::fs::read(home.state_file()).unwrap();
    bytes.truncate(bytes.len() / 2);
    home.write_state(&bytes);
    (home, serial)
}

#[test]
fn recover_from_backup_moves_the_bad_file_aside_and_never_lowers_the_serial() {
    let (home, serial_before) = with_history_then_garbage();
    let bad = std::fs::read(home.state_file()).unwrap();
    let r = home.run(&["recover", "--from-backup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("unreadable file was moved to"),
        "{}",
        r.stdout
    );
    let aside: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("deployment-state.json.unreadable-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read(aside[0].path()).unwrap(),
        bad,
        "the bad file is kept as it was"
    );
    let v = home.status_json();
    assert!(
        v["serial"].as_u64().unwrap() > serial_before,
        "serial went back"
    );
    let events = home.run(&["events", "--json"]).stdout;
    assert!(events.contains("\"state_recovered\""), "{events}");
    // Event sequence numbers stay unique after a restore of an older copy.
    let seqs = event_seqs(&events);
    let mut sorted = seqs.clone();
    sorted.dedup();
    assert_eq!(seqs, sorted, "sequence numbers repeat or go back");
}

#[test]
fn recover_refuses_a_readable_state() {
    let home = Home::new();
    one_completed_step(&home);
    let before = std::fs::read(home.state_file()).unwrap();
    home.run(&["recover", "--from-backup"])
        .expect(2, &["is readable: there is nothing to recover"]);
    assert_eq!(std::fs::read(home.state_file()).unwrap(), before);
}

#[test]
fn recover_without_a_backup_changes_nothing() {
    let home = Home::new();
    home.write_state(b"{garbage");
    home.run(&["recover", "--from-backup"])
        .expect(2, &["no copy to recover from"]);
    assert_eq!(std::fs::read(home.state_file()).unwrap(), b"{garbage");
}

#[test]
fn recover_from_an_unreadable_copy_changes_nothing() {
    let home = Home::new();
    home.write_state(b"{garbage");
    let copy = home.outside("copy.json");
    std::fs::write(&copy, b"[]").unwrap();
    home.run(&["recover", "--from", copy.to_str().unwrap()])
        .expect(4, &["cannot serve to recover either"]);
    assert_eq!(std::fs::read(home.state_file()).unwrap(), b"{garbage");
}

#[test]
fn recover_from_a_given_file_and_when_the_state_was_deleted() {
    let home = Home::new();
    one_completed_step(&home);
    let copy = home.outside("copy.json");
    std::fs::copy(home.state_file(), &copy).unwrap();
    let lineage = home.status_json()["lineage"].clone();
    std::fs::remove_file(home.state_file()).unwrap();
    let r = home.run(&["recover", "--from", copy.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = home.status_json();
    assert_eq!(v["deployment"]["status"], "completed");
    assert_eq!(v["lineage"], lineage);
}

fn aside_files(home: &Home) -> usize {
    std::fs::read_dir(home.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".unreadable-"))
        .count()
}

/// A backup over the state's size limit was installed, and then every command
/// refused the state it had just installed (exit 4). It is refused before anything
/// moves: the unreadable state stays where it was, nothing is set aside.
#[test]
fn recover_from_a_backup_over_the_size_limit_changes_nothing() {
    let home = Home::new();
    one_completed_step(&home);
    let mut big = std::fs::read(home.state_file()).unwrap();
    big.resize(big.len() + 65 * 1024 * 1024, b' '); // still valid JSON
    std::fs::write(home.layout().backup_file(), &big).unwrap();
    home.write_state(b"{garbage");
    home.run(&["recover", "--from-backup"]).expect(
        4,
        &[
            "bytes",
            "cannot serve to recover either; nothing was changed",
        ],
    );
    assert_eq!(std::fs::read(home.state_file()).unwrap(), b"{garbage");
    assert_eq!(aside_files(&home), 0, "the unreadable state was moved");
    assert_eq!(
        std::fs::metadata(home.layout().backup_file())
            .unwrap()
            .len(),
        big.len() as u64
    );
}

/// `recover --from OLD.json` over a zeroed state lowered the serial (18 -> 9): the
/// zeroed file shows no serial, so the floor comes from the backup too.
#[test]
fn recover_from_an_old_copy_over_a_zeroed_state_never_lowers_the_serial() {
    let home = Home::new();
    let store = home.store();
    let steps = [("a", "p"), ("b", "p")];
    run_deployment(&store, &steps, Some("b"), &[], at("2026-01-01T00:00:00Z"));
    let old = home.outside("old.json");
    std::fs::copy(home.state_file(), &old).unwrap();
    let old_serial = home.status_json()["serial"].as_u64().unwrap();
    run_deployment(&store, &steps, None, &[], at("2026-01-02T00:00:00Z"));
    let last = home.status_json()["serial"].as_u64().unwrap();
    assert!(last > old_serial);
    let len = std::fs::metadata(home.state_file()).unwrap().len() as usize;
    home.write_state(&vec![0u8; len]);
    let r = home.run(&["recover", "--from", old.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let now = home.status_json()["serial"].as_u64().unwrap();
    assert!(now > last, "the serial went back from {last} to {now}");
}
