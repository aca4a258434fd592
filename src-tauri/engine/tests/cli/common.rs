//! Helpers: a fresh installer home per test, the real binary, and states built
//! through the engine's own API.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

use thinkube_engine::paths::{EnvName, Layout};
use thinkube_engine::state::lifecycle::{
    AnyDeployment, Deployment, PlannedDeployment, PlannedStep,
};
use thinkube_engine::state::lock::{Identity, LockWait};
use thinkube_engine::state::model::{
    Configuration, EventKind, NewEvent, PhaseRecord, RunKind, RunOutcome, RunRecord, RunStep,
    StepError,
};
use thinkube_engine::state::store::{Store, new_run_id};
use thinkube_engine::timestamp::Timestamp;

pub const BIN: &str = env!("CARGO_BIN_EXE_thinkube-deploy");

/// A temporary installer home that does not exist until the installer creates it
/// (so its mode is the installer's); removed when dropped.
pub struct Home {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Home {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("home");
        Self { _dir: dir, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path beside the home (not inside it), for files a user brings.
    pub fn outside(&self, name: &str) -> PathBuf {
        self._dir.path().join(name)
    }

    /// Creates the home as the installer would (0700).
    pub fn create(&self) {
        use thinkube_engine::state::fsops::FileOps;
        thinkube_engine::state::fsops::RealFs
            .create_dir_all(self.path())
            .unwrap();
    }

    pub fn layout(&self) -> Layout {
        Layout::new(self.path(), EnvName::default_env())
    }

    pub fn state_file(&self) -> PathBuf {
        self.layout().state_file()
    }

    pub fn store(&self) -> Store {
        Store::new(self.layout(), Identity::new("tests"))
    }

    /// The binary, with this home and nothing of the caller's environment that matters.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        // HOME is outside the installer home: tools the steps run (Ansible) keep
        // their own files there, as they would in a user's home.
        c.args(args)
            .env("THINKUBE_INSTALLER_HOME", self.path())
            .env("HOME", self.outside("user-home"))
            .env("THINKUBE_ANSIBLE_PLAYBOOK", ansible_playbook())
            .env_remove("THINKUBE_LOG")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run thinkube-deploy"))
    }

    /// Runs the binary and fails the test (killing the process) if it has not
    /// finished within `seconds`: for cases where the bug was a hang.
    pub fn run_within(&self, seconds: u64, args: &[&str]) -> Run {
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run thinkube-deploy");
        let what = format!("`thinkube-deploy {}`", args.join(" "));
        Run::from(within(seconds, &what, child, Child::wait_with_output))
    }

    pub fn status_json(&self) -> serde_json::Value {
        let r = self.run(&["status", "--json"]);
        assert_eq!(r.code, 0, "status failed: {}", r.stderr);
        serde_json::from_str(&r.stdout).expect("status --json is JSON")
    }

    /// Puts a state file in place by hand (as a user or an older installer would).
    pub fn write_state(&self, bytes: &[u8]) {
        self.create();
        std::fs::write(self.state_file(), bytes).unwrap();
    }
}

/// What a run of the binary gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts the exit code and that stderr contains every fragment.
    pub fn expect(&self, code: i32, fragments: &[&str]) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        for f in fragments {
            assert!(
                self.stderr.contains(f),
                "stderr lacks {f:?}:\n{}",
                self.stderr
            );
        }
        self
    }
}

pub fn at(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

pub fn plan(steps: &[(&str, &str)]) -> PlannedDeployment {
    let mut phases: Vec<PhaseRecord> = Vec::new();
    for (_, phase) in steps {
        if !phases.iter().any(|p| p.id == *phase) {
            phases.push(PhaseRecord {
                id: phase.to_string(),
                title: format!("Phase {phase}"),
            });
        }
    }
    PlannedDeployment {
        id: "d-test".into(),
        plan_id: "test-plan".into(),
        plan_source: None,
        plan_digest: "sha256:0".into(),
        configuration: Configuration::default(),
        phases,
        steps: steps
            .iter()
            .map(|(id, phase)| PlannedStep {
                id: id.to_string(),
                phase: phase.to_string(),
                title: format!("Step {id}"),
                source: None,
                definition_digest: None,
                skip_reason: None,
            })
            .collect(),
    }
}

/// Runs one deployment through the engine API: steps `ok` complete, the step named
/// `fail` fails with an Ansible-like error. Records a run file. Returns the run id.
pub fn run_deployment(
    store: &Store,
    steps: &[(&str, &str)],
    fail: Option<&str>,
    flags: &[(&str, bool)],
    started: Timestamp,
) -> String {
    let mut w = store
        .open_writer("test", LockWait::NoWait, started)
        .unwrap();
    let run_id = new_run_id(started);
    let mut configuration = Configuration::default();
    for (name, on) in flags {
        configuration.flags.insert(name.to_string(), *on);
    }
    let current = AnyDeployment::from_record(w.state().deployment.clone()).unwrap();
    let mut d = match current {
        AnyDeployment::NotStarted(d) => {
            let mut p = plan(steps);
            p.configuration = configuration.clone();
            d.start(p, started).unwrap()
        }
        AnyDeployment::Failed(d) => d.retry(&[]).map_err(|(_, e)| e).unwrap(),
        AnyDeployment::Interrupted(d) => d.resume(),
        other => panic!("cannot run a deployment that is {:?}", other.status()),
    };
    let mut run = RunRecord {
        run_id: run_id.clone(),
        kind: RunKind::Deploy,
        deployment_id: d.record().id.clone(),
        started_at: started,
        finished_at: None,
        outcome: RunOutcome::Running,
        plan_id: d.record().plan_id.clone(),
        plan_digest: d.record().plan_digest.clone(),
        configuration: configuration.clone(),
        enabled_flags: configuration.enabled_flags(),
        steps_attempted: Vec::new(),
        program: "tests".into(),
    };
    let mut t = started;
    while let Some(step) = d.next_runnable().map(|s| s.id.clone()) {
        t = t.plus_seconds(1);
        let attempt = d.start_step(&step, &run_id, None, None, t).unwrap();
        t = t.plus_seconds(1);
        let failed = fail == Some(step.as_str());
        let error = failed.then(|| StepError {
            message: "the task failed: exit 2".into(),
            task: Some("Install packages".into()),
            host: Some("localhost".into()),
            exit_code: Some(2),
            output_tail: vec!["fatal: [localhost]: FAILED!".into()],
        });
        match &error {
            Some(e) => d.fail_step(&step, e.clone(), t).unwrap(),
            None => d.complete_step(&step, t).unwrap(),
        }
        run.steps_attempted.push(RunStep {
            step: step.clone(),
            attempt,
            outcome: if failed {
                thinkube_engine::state::model::AttemptOutcome::Failed
            } else {
                thinkube_engine::state::model::AttemptOutcome::Success
            },
            started_at: Some(t.plus_seconds(-1)),
            finished_at: Some(t),
            error,
        });
        if failed {
            break;
        }
    }
    let settled = d.settle(t).erase();
    run.finished_at = Some(t);
    run.outcome = match settled.status() {
        thinkube_engine::state::model::DeploymentStatus::Completed => RunOutcome::Success,
        thinkube_engine::state::model::DeploymentStatus::Failed => RunOutcome::Failed,
        _ => RunOutcome::Interrupted,
    };
    w.write_run_file(&run).unwrap();
    let events = vec![NewEvent::new(EventKind::RunFinished, "run finished").run(Some(&run_id))];
    w.commit(t, events, |s| {
        s.deployment = settled.into_record();
        s.current_run = Some(run);
        Ok(())
    })
    .unwrap();
    w.finish().unwrap();
    run_id
}

/// A deployment that exists but has not started: used where any valid state will do.
pub fn not_started() -> Deployment<thinkube_engine::state::lifecycle::NotStarted> {
    Deployment::empty(Configuration::default())
}

/// The tests' ansible-playbook: THINKUBE_ANSIBLE_PLAYBOOK, else the one
/// `scripts/ensure-ansible` installs under target/.
pub fn ansible_playbook() -> PathBuf {
    if let Some(p) = std::env::var_os("THINKUBE_ANSIBLE_PLAYBOOK").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/ansible-home/venv/bin/ansible-playbook");
    assert!(
        p.is_file(),
        "the tests need ansible-playbook: run scripts/ensure-ansible (scripts/test-all does), or set THINKUBE_ANSIBLE_PLAYBOOK"
    );
    p
}

/// A free TCP port on 127.0.0.1 (the OS picks it; nothing else of ours uses it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plan folder beside the home with the given files.
pub fn plan_dir(home: &Home, files: &[(&str, &str)]) -> PathBuf {
    let dir = home.outside("plan");
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

/// Each step as `status --json` shows it: (id, status, attempts).
pub fn steps_of(home: &Home) -> Vec<(String, String, u64)> {
    home.status_json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().into(),
                s["status"].as_str().unwrap().into(),
                s["attempts"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The outcomes of a step's attempts, oldest first, from the state file.
pub fn attempt_outcomes(
    home: &Home,
    step: &str,
) -> Vec<thinkube_engine::state::model::AttemptOutcome> {
    let state = home.store().load(Timestamp::now()).unwrap().unwrap().state;
    state
        .deployment
        .step(step)
        .unwrap()
        .attempts
        .iter()
        .map(|a| a.outcome)
        .collect()
}

/// A plan folder with one playbook step `id` running `book`; returns the plan file.
pub fn playbook_plan(home: &Home, id: &str, book: &str) -> PathBuf {
    let plan =
        format!("phases:\n  - id: p\n    steps:\n      - id: {id}\n        playbook: book.yaml\n");
    plan_dir(home, &[("plan.yaml", &plan), ("book.yaml", book)]).join("plan.yaml")
}

/// A deployment of one step `a`, completed, made through the engine.
pub fn one_completed_step(home: &Home) -> String {
    run_deployment(
        &home.store(),
        &[("a", "p")],
        None,
        &[],
        at("2026-01-01T00:00:00Z"),
    )
}

/// Starts `deploy` of `plan` and returns once a step has printed `child-started`
/// (its process is running), with the rest of the output to read.
pub fn start_blocked(home: &Home, plan: &Path) -> (Child, std::io::Lines<BufReader<ChildStdout>>) {
    let mut child = home
        .command(&["deploy", "--plan", plan.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("child-started") {
            break;
        }
    }
    (child, lines)
}

/// Waits for `child` to end, failing the test (and killing it) if it has not
/// within `seconds`: for cases where the bug was a hang.
pub fn wait_within(seconds: u64, what: &str, child: Child) -> std::process::ExitStatus {
    within(seconds, what, child, |mut c| c.wait())
}

fn within<T: Send + 'static>(
    seconds: u64,
    what: &str,
    child: Child,
    wait: impl FnOnce(Child) -> std::io::Result<T> + Send + 'static,
) -> T {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(wait(child));
    });
    match rx.recv_timeout(std::time::Duration::from_secs(seconds)) {
        Ok(out) => out.expect("wait for the child"),
        Err(_) => {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{what} hung for {seconds} s");
        }
    }
}

/// Kills a child when dropped, so a failing test does not leave it running (and
/// holding the test harness's output open).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sequence numbers of `events --json` output, in file order.
pub fn event_seqs(json_lines: &str) -> Vec<u64> {
    json_lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}
