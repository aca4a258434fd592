//! The store on a simulated disk (see simfs.rs): a power loss before every single
//! file operation of a deployment leaves a state that is readable and is exactly
//! one committed, none older than the last acknowledged durable (a step's pid is
//! not promised durable) and none newer than the one being committed, even when the
//! journal's unsynced lines reach the disk but for the first; injected faults (no space,
//! I/O errors) fail the command with a clear message, keep the previous state, and
//! the next command works.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use thinkube_engine::EngineError;
use thinkube_engine::paths::{EnvName, Layout};
use thinkube_engine::run::session::{Begun, Request, RunContext, RunSession};
use thinkube_engine::state::lock::{Identity, LockWait};
use thinkube_engine::state::model::{EventKind, NewEvent, ProcessRef};
use thinkube_engine::state::store::Store;

use crate::common::*;
use crate::simfs::{Op, SimFs};

const NOW: &str = "2026-01-01T00:00:00Z";
const STEPS: [(&str, &str); 3] = [("a", "p"), ("b", "p"), ("c", "q")];

fn store_on(root: &Path, fs: Arc<SimFs>) -> Store {
    Store::with_fs(
        Layout::new(root, EnvName::default_env()),
        fs,
        Identity::new("sim"),
    )
}

fn ctx() -> RunContext {
    RunContext {
        program: "sim".into(),
        boot_id: None,
        wait: LockWait::NoWait,
    }
}

/// What must match between runs: the deployment's status and each step's status
/// and attempt outcomes (run ids and times differ from run to run).
fn shape(store: &Store) -> Option<(u64, String)> {
    let state = store.load(at(NOW)).ok()??.state;
    let d = &state.deployment;
    let steps: Vec<String> = d
        .steps
        .iter()
        .map(|s| {
            format!(
                "{}:{}:{:?}",
                s.id,
                s.status.as_str(),
                s.attempts.iter().map(|a| a.outcome).collect::<Vec<_>>()
            )
        })
        .collect();
    Some((
        state.serial,
        format!("{} {}", d.status.as_str(), steps.join(" ")),
    ))
}

/// A whole deployment through the run API, as the runner makes it: each step
/// started, its pid recorded, completed. After each change, `ack` is told what the
/// process believes is committed, and whether it was promised durable (the pid's
/// commit is not: a power loss ends the step's process too).
fn deployment(store: &Store, ack: &mut dyn FnMut(&Store, bool)) -> Result<(), EngineError> {
    let request = Request::Deploy { plan: plan(&STEPS) };
    let Begun::Run(mut session) = RunSession::begin(store, request, &ctx(), at(NOW))? else {
        panic!("fresh deployment")
    };
    ack(store, true);
    for (i, (step, _)) in STEPS.iter().enumerate() {
        session.start_step(step, None, None, at(NOW))?;
        ack(store, true);
        let process = ProcessRef {
            pid: 4_000_000 + i as u32,
            start_ticks: Some(1),
        };
        session.set_step_process(step, process, at(NOW))?;
        ack(store, false);
        session.complete_step(step, at(NOW))?;
        ack(store, true);
    }
    session.finish(at(NOW))?;
    ack(store, true);
    Ok(())
}

/// What a power loss before operation `crash` left on `image`: readable, and
/// exactly a state committed, none older than the last promised durable (`acked`)
/// and none newer than the one being committed after the last acknowledged
/// (`last`). Then the next writer starts, repairs what needs repairing, and commits.
fn check_image(
    crash: usize,
    image: SimFs,
    root: &Path,
    (acked, last): (u64, u64),
    expected: &BTreeMap<u64, String>,
) {
    let recovered = store_on(root, Arc::new(image));
    match recovered.load(at(NOW)) {
        Err(e) => panic!("crash before op {crash}: the state is unreadable: {e}"),
        Ok(None) => assert_eq!(
            acked, 0,
            "crash before op {crash}: acknowledged serial {acked} lost, no state at all"
        ),
        Ok(Some(_)) => {
            let (serial, got) = shape(&recovered).unwrap();
            assert!(
                serial >= acked && serial <= last + 1,
                "crash before op {crash}: serial {serial}, but {acked} was acknowledged \
                 durable and {last} committed"
            );
            assert_eq!(
                Some(&got),
                expected.get(&serial),
                "crash before op {crash}: serial {serial} is a mix"
            );
        }
    }
    let mut w = recovered
        .open_writer("deploy", LockWait::NoWait, at(NOW))
        .unwrap_or_else(|e| panic!("crash before op {crash}: the next writer fails: {e}"));
    let before = w.state().serial;
    let serial = w.commit(at(NOW), vec![], |_| Ok(())).unwrap();
    assert_eq!(serial, before + 1);
    w.finish().unwrap();
    let events = recovered.read_events().unwrap();
    assert!(
        events.bad_lines.is_empty() && events.torn_tail == 0,
        "crash before op {crash}: the trail is damaged"
    );
    let seqs: Vec<u64> = events.events.iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "crash before op {crash}: event numbers repeat: {seqs:?}"
    );
}

#[test]
fn a_power_loss_before_any_file_operation_leaves_the_old_or_the_new_state() {
    // The run without a crash: what each serial looks like, and how many operations.
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(SimFs::with_dirs(&[dir.path()]));
    let store = store_on(dir.path(), fs.clone());
    let mut expected: BTreeMap<u64, String> = BTreeMap::new();
    deployment(&store, &mut |s, _| {
        let (serial, shape) = shape(s).unwrap();
        expected.insert(serial, shape);
    })
    .unwrap();
    let total = fs.ops();
    assert!(
        total > 30,
        "the scenario should exercise many operations, saw {total}"
    );

    for crash in 0..total {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(SimFs::with_dirs(&[dir.path()]));
        fs.crash_before(crash);
        let store = store_on(dir.path(), fs.clone());
        // The last serial promised durable, and the last one committed at all.
        let (mut acked, mut last) = (0u64, 0u64);
        let _ = deployment(&store, &mut |s, durable| {
            last = shape(s).unwrap().0;
            if durable {
                acked = last;
            }
        });
        assert!(fs.crashed(), "crash point {crash} was not reached");
        // Only what was synced; and the worst a disk writing pages out of order can
        // do to the journal (its unsynced lines kept but the first).
        let layout = Layout::new(dir.path(), EnvName::default_env());
        let torn = fs.after_power_loss_tearing(&layout.journal_file());
        check_image(
            crash,
            fs.after_power_loss(),
            dir.path(),
            (acked, last),
            &expected,
        );
        check_image(crash, torn, dir.path(), (acked, last), &expected);
    }
}

#[test]
fn no_space_and_io_errors_fail_clearly_keep_the_previous_state_and_clear() {
    // A run's step commits append to the journal; other commits (and the first of
    // each operation) write the state file whole. Each file operation of each.
    let journal = [Op::Append, Op::SyncFile, Op::SyncDir];
    let whole = [
        Op::WriteNew,
        Op::SyncFile,
        Op::Rename,
        Op::SyncDir,
        Op::Link,
        Op::Append,
    ];
    let cases = journal
        .iter()
        .map(|op| (true, *op))
        .chain(whole.iter().map(|op| (false, *op)));
    for (to_journal, op) in cases {
        for errno in [28, 5] {
            let case = format!(
                "{op:?}/{errno} ({})",
                if to_journal { "journal" } else { "whole" }
            );
            let dir = tempfile::tempdir().unwrap();
            let fs = Arc::new(SimFs::with_dirs(&[dir.path()]));
            let store = store_on(dir.path(), fs.clone());
            let Begun::Run(mut session) = RunSession::begin(
                &store,
                Request::Deploy { plan: plan(&STEPS) },
                &ctx(),
                at(NOW),
            )
            .unwrap() else {
                panic!()
            };
            let (before, before_shape, result) = if to_journal {
                let (before, before_shape) = shape(&store).unwrap();
                fs.fail_next(op, errno);
                let result = session.start_step("a", None, None, at(NOW)).map(|_| ());
                drop(session);
                (before, before_shape, result)
            } else {
                session.finish(at(NOW)).unwrap();
                let mut w = store
                    .open_writer("test", LockWait::NoWait, at(NOW))
                    .unwrap();
                let (before, before_shape) = shape(&store).unwrap();
                fs.fail_next(op, errno);
                let event = NewEvent::new(EventKind::StateRecovered, "a whole commit");
                let result = w.commit(at(NOW), vec![event], |_| Ok(())).map(|_| ());
                (before, before_shape, result)
            };
            let err = result.expect_err(&format!("{case}: the commit should fail"));
            let text = err.to_string();
            let hint = if errno == 28 {
                "the disk is full"
            } else {
                "Input/output error"
            };
            assert!(text.contains(hint), "{case}: {text}");
            let (serial, now_shape) =
                shape(&store).unwrap_or_else(|| panic!("{case}: state unreadable"));
            // Before the rename the old state stands; once the new file is in place
            // (a failed folder sync, or a failed append after the commit), it may be
            // the new one. A failed journal append is cut back off. Never anything else.
            if !to_journal && matches!(op, Op::SyncDir | Op::Append) {
                assert!(
                    serial == before || serial == before + 1,
                    "{case}: serial {serial}"
                );
            } else {
                assert_eq!(
                    (serial, &now_shape),
                    (before, &before_shape),
                    "{case}: the previous state changed"
                );
            }
            // The fault has cleared: the deployment resumes and finishes.
            let Begun::Run(mut session) =
                RunSession::begin(&store, Request::Resume { plan: None }, &ctx(), at(NOW))
                    .unwrap_or_else(|e| panic!("{op:?}/{errno}: the next command fails: {e}"))
            else {
                panic!()
            };
            while let Some(step) = session.next_step().map(|s| s.id.clone()) {
                session.start_step(&step, None, None, at(NOW)).unwrap();
                session.complete_step(&step, at(NOW)).unwrap();
            }
            let summary = session.finish(at(NOW)).unwrap();
            assert_eq!(
                summary.status,
                thinkube_engine::state::model::DeploymentStatus::Completed,
                "{case}"
            );
        }
    }
}
