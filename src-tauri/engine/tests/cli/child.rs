//! Child processes for the multi-process tests. The test binary runs itself with
//! `THINKUBE_TEST_CHILD` set and the filter `child::entry`; every line meant for the
//! parent starts with `CHILD:`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

use thinkube_engine::state::lock::{LockWait, current_process};
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
    let store = thinkube_engine::state::store::Store::new(
        thinkube_engine::paths::Layout::new(home, thinkube_engine::paths::EnvName::default_env()),
        thinkube_engine::state::lock::Identity::new("test child"),
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

/// Works through a deployment of many steps with the run API, printing each serial
/// after it is committed (so the parent knows what was acknowledged).
fn commit_loop(store: &thinkube_engine::state::store::Store, out: &mut std::io::Stdout) {
    use thinkube_engine::run::session::{Begun, Request, RunContext, RunSession};
    let steps: Vec<(String, &str)> = (0..CRASH_STEPS)
        .map(|i| (format!("s{i:04}"), "p"))
        .collect();
    let refs: Vec<(&str, &str)> = steps.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    let ctx = RunContext {
        program: "test child".into(),
        boot_id: None,
        wait: LockWait::NoWait,
    };
    let request = Request::Deploy { plan: plan(&refs) };
    let mut session = match RunSession::begin(store, request, &ctx, Timestamp::now()).unwrap() {
        Begun::Run(s) => s,
        Begun::AlreadyCompleted { .. } => {
            writeln!(out, "CHILD: done").unwrap();
            return;
        }
    };
    let me = current_process();
    while let Some(step) = session.next_step().map(|s| s.id.clone()) {
        let (_, serial) = session
            .start_step(&step, Some(me), None, Timestamp::now())
            .unwrap();
        writeln!(out, "CHILD: serial {serial}").unwrap();
        let serial = session.complete_step(&step, Timestamp::now()).unwrap();
        writeln!(out, "CHILD: completed {step} {serial}").unwrap();
        out.flush().unwrap();
    }
    session.finish(Timestamp::now()).unwrap();
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
