//! Child processes for the multi-process tests. The test binary runs itself with
//! `THINKUBE_TEST_CHILD` set and the filter `child::entry`; every line meant for the
//! parent starts with `CHILD:`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

use thinkube_engine::lifecycle::AnyDeployment;
use thinkube_engine::lock::{LockWait, current_process};
use thinkube_engine::timestamp::Timestamp;

use crate::common::{Home, plan};

/// Steps of the crash test's deployment.
pub const CRASH_STEPS: usize = 400;

#[test]
fn entry() {
    let Ok(role) = std::env::var("THINKUBE_TEST_CHILD") else {
        return; // an ordinary test run: nothing to do
    };
    let home = std::env::var("THINKUBE_INSTALLER_HOME").expect("home");
    let store = thinkube_engine::store::Store::new(
        thinkube_engine::paths::Layout::new(home, thinkube_engine::paths::EnvName::default_env()),
        thinkube_engine::lock::Identity::new("test child"),
    );
    let out = &mut std::io::stdout();
    match role.as_str() {
        "hold-lock" => {
            let _w = store
                .open_writer("deploy", LockWait::NoWait, Timestamp::now())
                .unwrap();
            writeln!(out, "CHILD: locked {}", std::process::id()).unwrap();
            out.flush().unwrap();
            // Hold until the parent closes our stdin.
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        }
        "commit-loop" => commit_loop(&store, out),
        other => panic!("unknown child role {other}"),
    }
}

/// Works through a deployment of many steps, printing each serial after it is
/// committed (so the parent knows what was acknowledged).
fn commit_loop(store: &thinkube_engine::store::Store, out: &mut std::io::Stdout) {
    let mut w = store
        .open_writer("deploy", LockWait::NoWait, Timestamp::now())
        .unwrap();
    let steps: Vec<(String, &str)> = (0..CRASH_STEPS)
        .map(|i| (format!("s{i:04}"), "p"))
        .collect();
    let refs: Vec<(&str, &str)> = steps.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    let mut d = match AnyDeployment::from_record(w.state().deployment.clone()).unwrap() {
        AnyDeployment::NotStarted(d) => d.start(plan(&refs), Timestamp::now()).unwrap(),
        AnyDeployment::Interrupted(d) => d.resume(),
        AnyDeployment::Completed(_) => {
            writeln!(out, "CHILD: done").unwrap();
            return;
        }
        other => panic!("unexpected {:?}", other.status()),
    };
    let me = current_process();
    while let Some(step) = d.next_runnable().map(|s| s.id.clone()) {
        d.start_step(&step, "run", Some(me), None, Timestamp::now())
            .unwrap();
        let record = d.record().clone();
        let serial = w
            .commit(Timestamp::now(), vec![], |s| {
                s.deployment = record;
                Ok(())
            })
            .unwrap();
        writeln!(out, "CHILD: serial {serial}").unwrap();
        d.complete_step(&step, Timestamp::now()).unwrap();
        let record = d.record().clone();
        let serial = w
            .commit(Timestamp::now(), vec![], |s| {
                s.deployment = record;
                Ok(())
            })
            .unwrap();
        writeln!(out, "CHILD: completed {step} {serial}").unwrap();
        out.flush().unwrap();
    }
    let done = d.settle(Timestamp::now()).erase().into_record();
    w.commit(Timestamp::now(), vec![], |s| {
        s.deployment = done;
        Ok(())
    })
    .unwrap();
    writeln!(out, "CHILD: done").unwrap();
}

/// A running child and a reader of its `CHILD:` lines.
pub struct ChildProc {
    pub child: Child,
    lines: std::io::Lines<BufReader<ChildStdout>>,
}

impl ChildProc {
    pub fn spawn(home: &Home, role: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child::entry",
                "--nocapture",
                "--test-threads=1",
                "--quiet",
            ])
            .env("THINKUBE_TEST_CHILD", role)
            .env("THINKUBE_INSTALLER_HOME", home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, lines }
    }

    /// The next `CHILD:` line (without the prefix), or `None` when the child is gone.
    pub fn next_line(&mut self) -> Option<String> {
        for line in self.lines.by_ref() {
            let line = line.ok()?;
            if let Some(rest) = line.strip_prefix("CHILD: ") {
                return Some(rest.to_string());
            }
        }
        None
    }

    pub fn kill(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// Closes stdin (a `hold-lock` child then releases) and waits.
    pub fn release(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}
