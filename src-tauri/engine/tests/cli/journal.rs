//! The journal (`deployment-state.journal`): a run's step commits are appended to it,
//! every reader replays it over the state file, and the state file is whole again
//! when the operation ends. What a crash or a damaged disk can leave in it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use thinkube_engine::paths::Layout;
use thinkube_engine::state::fsops::{FileOps, RealFs};
use thinkube_engine::state::lock::Identity;

use thinkube_engine::run::session::{Begun, Request, RunContext, RunSession};
use thinkube_engine::state::follow::Follower;
use thinkube_engine::state::lock::LockWait;
use thinkube_engine::state::model::{DeploymentStatus, ProcessRef, StateFile, StepStatus};
use thinkube_engine::state::store::Store;

use crate::common::*;

const NOW: &str = "2026-01-01T00:00:00Z";
const STEPS: [(&str, &str); 3] = [("a", "p"), ("b", "p"), ("c", "p")];

fn begin(store: &Store, request: Request) -> RunSession {
    let ctx = RunContext {
        program: "tests".into(),
        boot_id: None,
        wait: LockWait::NoWait,
    };
    match RunSession::begin(store, request, &ctx, at(NOW)).unwrap() {
        Begun::Run(session) => *session,
        other => panic!("no run began: {other:?}"),
    }
}

fn deploy(store: &Store) -> RunSession {
    begin(store, Request::Deploy { plan: plan(&STEPS) })
}

fn journal(home: &Home) -> PathBuf {
    home.layout().journal_file()
}

/// The serial the state file itself says, without the journal.
fn file_serial(home: &Home) -> u64 {
    let bytes = std::fs::read(home.state_file()).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    value["serial"].as_u64().unwrap()
}

/// A run that completed step a and stopped (its process went on living: the
/// session is dropped, as a killed runner leaves it). Returns the last serial.
fn stopped_after_a(home: &Home) -> u64 {
    let mut session = deploy(&home.store());
    session.start_step("a", None, None, at(NOW)).unwrap();
    session.complete_step("a", at(NOW)).unwrap()
}

fn status_of(home: &Home) -> (u64, Vec<String>) {
    let status = home.status_json();
    let steps = status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap().to_string())
        .collect();
    (status["serial"].as_u64().unwrap(), steps)
}

#[test]
fn a_run_s_step_commits_are_journaled_seen_by_every_reader_and_written_whole_at_the_end() {
    let home = Home::new();
    let store = home.store();
    let mut session = deploy(&store);
    let begun = file_serial(&home);
    session.start_step("a", None, None, at(NOW)).unwrap();
    let serial = session.complete_step("a", at(NOW)).unwrap();
    // The state file was not rewritten: the journal holds the two commits.
    assert_eq!(file_serial(&home), begun);
    let lines = std::fs::read_to_string(journal(&home)).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    // Every reader replays it: the engine's load, and `status` in another process.
    let loaded = store.load(at(NOW)).unwrap().unwrap().state;
    assert_eq!(loaded.serial, serial);
    assert_eq!(loaded.deployment.steps[0].status, StepStatus::Completed);
    assert_eq!(
        status_of(&home),
        (
            serial,
            vec!["completed".into(), "pending".into(), "pending".into()]
        )
    );
    // The operation's end writes the state file whole and removes the journal; the
    // backup is the state as last committed, not the one before the run.
    let summary = session.finish(at(NOW)).unwrap();
    assert!(!journal(&home).exists());
    assert_eq!(file_serial(&home), summary.serial);
    let backup: StateFile =
        serde_json::from_slice(&std::fs::read(home.layout().backup_file()).unwrap()).unwrap();
    assert_eq!(backup.serial, serial);
    assert_eq!(backup.deployment.steps[0].status, StepStatus::Completed);
}

#[test]
fn a_last_journal_line_cut_short_or_unreadable_is_ignored() {
    let home = Home::new();
    let serial = stopped_after_a(&home);
    let expected = (
        serial,
        vec!["completed".to_string(), "pending".into(), "pending".into()],
    );
    assert_eq!(status_of(&home), expected);
    let good = std::fs::read(journal(&home)).unwrap();
    // Never acknowledged: a crash cut the append short, or left garbage.
    for tail in [
        &b"{\"lineage\":\"12"[..],
        b"\0\0\0\0\n",
        b"{\"serial\": 99}\n",
    ] {
        std::fs::write(journal(&home), [&good[..], tail].concat()).unwrap();
        assert_eq!(
            status_of(&home),
            expected,
            "{:?}",
            String::from_utf8_lossy(tail)
        );
    }
    // The next writer goes on from the last acknowledged commit.
    let mut session = begin(&home.store(), Request::Resume { plan: None });
    while let Some(step) = session.next_step().map(|s| s.id.clone()) {
        session.start_step(&step, None, None, at(NOW)).unwrap();
        session.complete_step(&step, at(NOW)).unwrap();
    }
    let summary = session.finish(at(NOW)).unwrap();
    assert_eq!(summary.status, DeploymentStatus::Completed);
    assert!(summary.serial > serial);
    assert!(!journal(&home).exists());
}

#[test]
fn an_unreadable_journal_line_before_others_exits_4_and_recover_keeps_the_state_file() {
    let home = Home::new();
    let serial = stopped_after_a(&home);
    let good = std::fs::read_to_string(journal(&home)).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(1, "not a journal entry");
    let damaged = format!("{}\n", lines.join("\n"));
    std::fs::write(journal(&home), &damaged).unwrap();
    let state_before = std::fs::read(home.state_file()).unwrap();
    for args in [
        &["status"][..],
        &["deploy", "--plan", "demo"],
        &["clean-state", "--yes"],
    ] {
        home.run(args).expect(
            4,
            &[
                "deployment-state.journal",
                "line 2",
                "recover --from-backup",
            ],
        );
    }
    // Nothing was written over what could not be read.
    assert_eq!(std::fs::read(home.state_file()).unwrap(), state_before);
    assert_eq!(std::fs::read_to_string(journal(&home)).unwrap(), damaged);
    // recover moves the journal aside (kept, byte for byte) and keeps the state file,
    // newer than the backup; the serial never goes back.
    let recovered = home.run(&["recover", "--from-backup"]);
    assert_eq!(recovered.code, 0, "{}", recovered.stderr);
    assert!(
        recovered.stdout.contains("its journal was moved to"),
        "{}",
        recovered.stdout
    );
    let aside: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("deployment-state.journal.unreadable-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(std::fs::read_to_string(aside[0].path()).unwrap(), damaged);
    assert!(!journal(&home).exists());
    let (after, steps) = status_of(&home);
    assert!(after > serial, "serial {after} after {serial}");
    assert_eq!(steps, ["pending", "pending", "pending"]);
}

#[test]
fn journal_lines_the_state_file_already_holds_are_skipped() {
    // A crash after the state file was written whole but before the journal was
    // removed leaves lines the state file already holds.
    let home = Home::new();
    let mut session = deploy(&home.store());
    session.start_step("a", None, None, at(NOW)).unwrap();
    session.complete_step("a", at(NOW)).unwrap();
    let left = std::fs::read(journal(&home)).unwrap();
    let summary = session.finish(at(NOW)).unwrap();
    let at_rest = status_of(&home);
    assert_eq!(at_rest.0, summary.serial);
    std::fs::write(journal(&home), &left).unwrap();
    assert_eq!(status_of(&home), at_rest);
    // The next writer writes the state whole first, which removes them.
    let mut session = begin(&home.store(), Request::Resume { plan: None });
    assert!(!journal(&home).exists());
    let step = session.next_step().unwrap().id.clone();
    assert_eq!(step, "b");
    session.start_step(&step, None, None, at(NOW)).unwrap();
    assert_eq!(
        std::fs::read_to_string(journal(&home))
            .unwrap()
            .lines()
            .count(),
        1
    );
}

#[test]
fn a_journal_that_does_not_follow_the_state_file_is_unreadable() {
    let home = Home::new();
    stopped_after_a(&home);
    let good = std::fs::read_to_string(journal(&home)).unwrap();
    let second: String = good.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(journal(&home), second).unwrap();
    home.run(&["status"]).expect(
        4,
        &["deployment-state.journal", "does not follow the state file"],
    );
}

/// The real file system, except that the first read of the journal is preceded by
/// `between` (a writer's work landing between a reader's two reads), and that it
/// counts the bytes it reads.
#[derive(Default)]
struct Observed {
    journal: PathBuf,
    between: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
    bytes_read: AtomicU64,
}

impl Observed {
    fn counted(&self, read: std::io::Result<Option<Vec<u8>>>) -> std::io::Result<Option<Vec<u8>>> {
        if let Ok(Some(bytes)) = &read {
            self.bytes_read
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        read
    }
}

impl FileOps for Observed {
    fn read(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        if path == self.journal
            && let Some(between) = self.between.lock().unwrap().take()
        {
            between();
        }
        self.counted(RealFs.read(path))
    }
    fn read_from(&self, path: &Path, offset: u64) -> std::io::Result<Option<Vec<u8>>> {
        self.counted(RealFs.read_from(path, offset))
    }
    fn write_new(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        RealFs.write_new(path, bytes)
    }
    fn append(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        RealFs.append(path, bytes)
    }
    fn sync_file(&self, path: &Path) -> std::io::Result<()> {
        RealFs.sync_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        RealFs.sync_dir(dir)
    }
    fn rename_entry(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        RealFs.rename_entry(from, to)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        RealFs.hard_link(from, to)
    }
    fn make_private(&self, path: &Path) -> std::io::Result<()> {
        RealFs.make_private(path)
    }
    fn set_len(&self, path: &Path, len: u64) -> std::io::Result<()> {
        RealFs.set_len(path, len)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        RealFs.remove(path)
    }
    fn create_dir(&self, path: &Path) -> std::io::Result<()> {
        RealFs.create_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        RealFs.exists(path)
    }
}

/// The state file and the journal as they are now (`None`: no journal).
fn files(home: &Home) -> (Vec<u8>, Option<Vec<u8>>) {
    (
        std::fs::read(home.state_file()).unwrap(),
        std::fs::read(journal(home)).ok(),
    )
}

/// Puts `files` in place as a writer does: the state file by rename (a new file).
fn put(layout: &Layout, (state, lines): &(Vec<u8>, Option<Vec<u8>>)) {
    let tmp = layout.root.join("next-state");
    std::fs::write(&tmp, state).unwrap();
    std::fs::rename(&tmp, layout.state_file()).unwrap();
    match lines {
        Some(lines) => std::fs::write(layout.journal_file(), lines).unwrap(),
        None => std::fs::remove_file(layout.journal_file()).unwrap(),
    }
}

#[test]
fn a_reader_never_mixes_a_state_file_with_a_journal_written_after_it() {
    // Two moments of one deployment: A, a run's journal over the state file; B, a
    // later writer's (the state written whole, then a new journal), or the same
    // deployment at rest (no journal). A reader that read A's state file and then
    // finds B's journal, or none, must read again, not show a mix or an older state.
    let home = Home::new();
    stopped_after_a(&home);
    let moment_a = files(&home);
    let mut session = begin(&home.store(), Request::Resume { plan: None });
    session.start_step("b", None, None, at(NOW)).unwrap();
    let moment_b = files(&home);
    let at_b = home.store().load(at(NOW)).unwrap().unwrap().state;
    let at_rest = session.finish(at(NOW)).unwrap().serial;
    let moment_rest = files(&home);
    assert!(moment_rest.1.is_none(), "a state at rest has no journal");
    for (later, serial) in [(moment_b, at_b.serial), (moment_rest, at_rest)] {
        put(&home.layout(), &moment_a);
        let layout = home.layout();
        let store = Store::with_fs(
            home.layout(),
            Arc::new(Observed {
                journal: journal(&home),
                between: std::sync::Mutex::new(Some(Box::new(move || put(&layout, &later)))),
                ..Observed::default()
            }),
            Identity::new("tests"),
        );
        let read = store.load(at(NOW)).unwrap().unwrap().state;
        assert_eq!(read.serial, serial);
    }
}

/// Step a started, given its pid and completed, the session left open (as a killed
/// runner leaves it, the lock released). Returns the serials of the three commits.
fn a_ran_with_its_pid(home: &Home) -> [u64; 3] {
    let mut session = deploy(&home.store());
    let (_, started) = session.start_step("a", None, None, at(NOW)).unwrap();
    let process = ProcessRef {
        pid: 4_000_000,
        start_ticks: Some(1),
    };
    let pid = session.set_step_process("a", process, at(NOW)).unwrap();
    let completed = session.complete_step("a", at(NOW)).unwrap();
    drop(session);
    [started, pid, completed]
}

fn journal_lines(home: &Home) -> Vec<serde_json::Value> {
    std::fs::read_to_string(journal(home))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The journal with its lines numbered `damaged` (from 1) overwritten: zeros, as a
/// page a power loss lost, or other bytes, keeping the line ends.
fn damage(home: &Home, damaged: &[usize], with: u8) {
    let text = std::fs::read(journal(home)).unwrap();
    let mut out = Vec::new();
    for (n, line) in text.split_inclusive(|b| *b == b'\n').enumerate() {
        if damaged.contains(&(n + 1)) {
            out.extend(std::iter::repeat_n(with, line.len() - 1));
            out.push(b'\n');
        } else {
            out.extend_from_slice(line);
        }
    }
    std::fs::write(journal(home), out).unwrap();
}

#[test]
fn a_pid_line_a_power_loss_damaged_is_covered_by_the_step_s_next_line() {
    // The pid's line is not fsynced on its own; a power loss during the next line's
    // fsync may keep the next line and lose it. The next line holds its changes too.
    for with in [0u8, b'x'] {
        let home = Home::new();
        let [_, pid, completed] = a_ran_with_its_pid(&home);
        let lines = journal_lines(&home);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1]["serial"], pid);
        assert!(lines[1].get("covers_from").is_none());
        assert_eq!(lines[2]["covers_from"], pid);
        let expected = (
            completed,
            vec!["completed".to_string(), "pending".into(), "pending".into()],
        );
        assert_eq!(status_of(&home), expected);
        damage(&home, &[2], with);
        assert_eq!(
            status_of(&home),
            expected,
            "pid line overwritten with {with}"
        );
        // The trail holds each event once (the covering line's events include the
        // pid line's, which were appended already).
        let seqs: Vec<u64> = home
            .store()
            .read_events()
            .unwrap()
            .events
            .iter()
            .map(|e| e.seq)
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        // The next writer goes on from there.
        let session = begin(&home.store(), Request::Resume { plan: None });
        assert_eq!(session.next_step().unwrap().id, "b");
        assert!(session.finish(at(NOW)).unwrap().serial > completed);
    }
}

#[test]
fn a_damaged_line_no_later_line_covers_exits_4() {
    // The step's start is fsynced before the pid's line is written: damage there is
    // not a power loss, and no later line says it holds that commit.
    let home = Home::new();
    a_ran_with_its_pid(&home);
    damage(&home, &[1], 0);
    home.run(&["status"]).expect(
        4,
        &[
            "deployment-state.journal",
            "line 1",
            "recover --from-backup",
        ],
    );
}

#[test]
fn damaged_lines_at_the_journal_s_end_were_never_acknowledged_and_are_ignored() {
    // A power loss during the completion's fsync: the pid's line and the completion's
    // both damaged. Neither was acknowledged durable; the step's start was (and its
    // runner is gone, so status says interrupted).
    let home = Home::new();
    let [started, ..] = a_ran_with_its_pid(&home);
    damage(&home, &[2, 3], 0);
    assert_eq!(
        status_of(&home),
        (
            started,
            vec![
                "interrupted".to_string(),
                "pending".into(),
                "pending".into()
            ]
        )
    );
}

/// What `load` says, as JSON (a follower must say exactly the same).
fn loaded(home: &Home) -> serde_json::Value {
    serde_json::to_value(home.store().load(at(NOW)).unwrap().unwrap().state).unwrap()
}

#[test]
fn a_follower_answers_what_load_does_reading_only_the_lines_appended_since() {
    const MANY: usize = 60;
    let names: Vec<String> = (0..MANY).map(|i| format!("s{i}")).collect();
    let steps: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "p")).collect();
    let home = Home::new();
    let fs = Arc::new(Observed::default());
    let mut follower = Follower::new(Store::with_fs(
        home.layout(),
        fs.clone(),
        Identity::new("tests"),
    ));
    assert!(follower.read(at(NOW)).unwrap().is_none(), "no state yet");
    let follow = |follower: &mut Follower| {
        let before = fs.bytes_read.load(Ordering::Relaxed);
        let state = follower.read(at(NOW)).unwrap().unwrap().state.clone();
        assert_eq!(serde_json::to_value(&state).unwrap(), loaded(&home));
        fs.bytes_read.load(Ordering::Relaxed) - before
    };
    let journal_len = || std::fs::metadata(journal(&home)).map_or(0, |m| m.len());
    let mut session = begin(&home.store(), Request::Deploy { plan: plan(&steps) });
    let whole = follow(&mut follower);
    let state_len = std::fs::metadata(home.state_file()).unwrap().len();
    assert!(whole >= state_len, "the first read is whole: {whole} bytes");
    let begun = file_serial(&home);
    let mut seen = journal_len();
    for (i, name) in names.iter().enumerate().take(MANY / 2) {
        session.start_step(name, None, None, at(NOW)).unwrap();
        let process = ProcessRef {
            pid: 4_000_000 + i as u32,
            start_ticks: Some(1),
        };
        session.set_step_process(name, process, at(NOW)).unwrap();
        // Every other step, the follower reads between the pid's line and the next.
        if i % 2 == 0 {
            assert_eq!(follow(&mut follower), journal_len() - seen);
            seen = journal_len();
        }
        session.complete_step(name, at(NOW)).unwrap();
        assert_eq!(follow(&mut follower), journal_len() - seen, "step {name}");
        seen = journal_len();
    }
    assert_eq!(
        file_serial(&home),
        begun,
        "the test must not compact the journal"
    );
    // Nothing new: nothing read.
    assert_eq!(follow(&mut follower), 0);
    // A line not yet whole is read again once it is.
    let complete = journal_len();
    let line = std::fs::read(journal(&home)).unwrap();
    let last_line_start = line[..line.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let last = line[last_line_start..].to_vec();
    RealFs
        .set_len(&journal(&home), last_line_start as u64)
        .unwrap();
    follow(&mut follower); // cut back: read whole
    RealFs.append(&journal(&home), &last[..10]).unwrap();
    follow(&mut follower);
    RealFs.append(&journal(&home), &last[10..]).unwrap();
    assert_eq!(journal_len(), complete);
    follow(&mut follower);
    // The operation's end writes the state whole: read whole again.
    session.finish(at(NOW)).unwrap();
    assert!(follow(&mut follower) >= state_len);
    // A later writer (a resume) is followed the same way.
    let mut session = begin(&home.store(), Request::Resume { plan: None });
    follow(&mut follower);
    let seen = journal_len();
    let next = session.next_step().unwrap().id.clone();
    session.start_step(&next, None, None, at(NOW)).unwrap();
    assert_eq!(follow(&mut follower), journal_len() - seen);
    session.complete_step(&next, at(NOW)).unwrap();
    drop(session);
    // A journal damaged before its last line: the follower says what load says.
    let mut lines: Vec<String> = std::fs::read_to_string(journal(&home))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.insert(1, "not a journal entry".into());
    std::fs::write(journal(&home), format!("{}\n", lines.join("\n"))).unwrap();
    let load_error = home.store().load(at(NOW)).unwrap_err().to_string();
    let follow_error = follower.read(at(NOW)).unwrap_err().to_string();
    assert_eq!(follow_error, load_error);
    assert!(follow_error.contains("line 2"), "{follow_error}");
}
