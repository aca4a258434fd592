//! A model-based test: random sequences of deploy, resume, retry (all, or one
//! step), clean-state, a kill or a cancel while a step runs, a corrupted state
//! recovered from its backup, steps made to fail or pass, and a step removed from
//! or put back in the plan, each run against the real binary in a fresh home and
//! against a small model of what the state must then say.
//!
//! After every operation: the exit code is the one the model predicts; the steps,
//! their statuses and the deployment's status are the model's; every step ran
//! exactly as often as the model says (each step appends to its own counter file);
//! the serial never went back; the audit trail's numbers are 1..N with no gap; and
//! every failed step keeps its error. `PROPTEST_CASES` sets how many sequences run
//! (default 40; `scripts/reliability-long` runs 500).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use proptest::prelude::*;

use crate::common::*;

const STEPS: usize = 4;
/// The step a plan edit removes and puts back.
const EDITED: usize = STEPS - 1;

#[derive(Debug, Clone)]
enum Op {
    Deploy,
    Resume,
    RetryAll,
    RetryOne(usize),
    CleanState,
    /// Make step `n` fail (true) or pass (false) from now on.
    SetFails(usize, bool),
    /// Remove the last step from the plan, or put it back.
    TogglePlan,
    /// Start the deployment (or resume it), and stop it while step `n` runs:
    /// with SIGKILL of the runner (true) or `cancel` (false).
    StopAt(usize, bool),
    /// Overwrite the state with garbage, then `recover --from-backup`.
    CorruptAndRecover,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Deploy),
        2 => Just(Op::Resume),
        2 => Just(Op::RetryAll),
        2 => (0..STEPS).prop_map(Op::RetryOne),
        1 => Just(Op::CleanState),
        3 => (0..STEPS, any::<bool>()).prop_map(|(n, f)| Op::SetFails(n, f)),
        1 => Just(Op::TogglePlan),
        2 => (0..STEPS, any::<bool>()).prop_map(|(n, k)| Op::StopAt(n, k)),
        1 => Just(Op::CorruptAndRecover),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Pending,
    Completed,
    Failed,
    Interrupted,
}

impl St {
    fn as_str(self) -> &'static str {
        match self {
            St::Pending => "pending",
            St::Completed => "completed",
            St::Failed => "failed",
            St::Interrupted => "interrupted",
        }
    }
}

/// What the state must say.
#[derive(Debug, Clone)]
struct Model {
    started: bool,
    /// The deployment's steps, in plan order: (step number, status).
    steps: Vec<(usize, St)>,
    /// Whether the plan file has step `EDITED`.
    plan_has_edited: bool,
    /// Whether the plan the deployment last ran had it: `resume` and `retry`
    /// without `--plan` refuse a plan changed since (exit 2).
    ran_with_edited: bool,
    fails: [bool; STEPS],
    runs: [u64; STEPS],
}

impl Model {
    fn new() -> Self {
        Self {
            started: false,
            steps: Vec::new(),
            plan_has_edited: true,
            ran_with_edited: true,
            fails: [false; STEPS],
            runs: [0; STEPS],
        }
    }

    fn plan_steps(&self) -> Vec<usize> {
        (0..STEPS)
            .filter(|n| *n != EDITED || self.plan_has_edited)
            .collect()
    }

    fn status(&self) -> &'static str {
        if !self.started {
            "not_started"
        } else if self.steps.iter().any(|(_, s)| *s == St::Failed) {
            "failed"
        } else if self.steps.iter().all(|(_, s)| *s == St::Completed) {
            "completed"
        } else {
            "interrupted"
        }
    }

    /// The deployment matched to the plan, as a run does it first; `Err` when a
    /// step that did not finish is no longer in the plan (exit 2).
    fn replanned(&self) -> Result<Vec<(usize, St)>, ()> {
        let plan = self.plan_steps();
        if self
            .steps
            .iter()
            .any(|(n, s)| !plan.contains(n) && matches!(s, St::Failed | St::Interrupted))
        {
            return Err(());
        }
        Ok(plan
            .iter()
            .map(|n| {
                let st = self.steps.iter().find(|(m, _)| m == n).map(|(_, s)| *s);
                (*n, st.unwrap_or(St::Pending))
            })
            .collect())
    }

    /// The next step a run starts: the first to run, unless a failure is before it.
    fn next(&self) -> Option<usize> {
        let i = self.steps.iter().position(|(_, s)| *s != St::Completed)?;
        (self.steps[i].1 != St::Failed).then_some(i)
    }

    /// Runs steps in order until the end or a failure; returns the exit code.
    fn run(&mut self) -> i32 {
        while let Some(i) = self.next() {
            let n = self.steps[i].0;
            self.runs[n] += 1;
            if self.fails[n] {
                self.steps[i].1 = St::Failed;
                return 1;
            }
            self.steps[i].1 = St::Completed;
        }
        // Stopped at an earlier failure (retrying a step before it), or done.
        match self.status() {
            "completed" => 0,
            _ => 1,
        }
    }

    /// deploy, resume or retry as the engine does them: the expected exit code,
    /// and whether a run starts (the model is then at the start of that run).
    fn begin(&mut self, op: &Op) -> (i32, bool) {
        if !self.started {
            return match op {
                Op::Deploy | Op::StopAt(..) => {
                    self.started = true;
                    self.ran_with_edited = self.plan_has_edited;
                    self.steps = self
                        .plan_steps()
                        .into_iter()
                        .map(|n| (n, St::Pending))
                        .collect();
                    (0, true)
                }
                _ => (2, false),
            };
        }
        if !matches!(op, Op::Deploy | Op::StopAt(..))
            && self.plan_has_edited != self.ran_with_edited
        {
            return (2, false);
        }
        let Ok(replanned) = self.replanned() else {
            return (2, false);
        };
        let before = std::mem::replace(&mut self.steps, replanned);
        let changed = before != self.steps;
        let status = self.status();
        let refused = |m: &mut Model, code| {
            m.steps = before.clone();
            (code, false)
        };
        let (code, runs) = match (op, status) {
            (Op::Deploy | Op::StopAt(..), "interrupted") | (Op::Resume, "interrupted") => (0, true),
            (Op::Deploy, "failed") => refused(self, 1),
            // deploy of a completed deployment keeps what the plan changed.
            (Op::Deploy, "completed") if changed => (0, false),
            (Op::Deploy, "completed") => refused(self, 0),
            (Op::StopAt(..), _) | (Op::Resume, _) => refused(self, 2),
            (Op::RetryAll, _) => {
                if !self.steps.iter().any(|(_, s)| *s == St::Failed) {
                    return refused(self, 2);
                }
                for (_, s) in &mut self.steps {
                    if *s == St::Failed {
                        *s = St::Pending;
                    }
                }
                (0, true)
            }
            (Op::RetryOne(n), _) => {
                let Some(i) = self.steps.iter().position(|(m, _)| m == n) else {
                    return refused(self, 2);
                };
                if self.steps[..i].iter().any(|(_, s)| *s == St::Failed) {
                    return refused(self, 2);
                }
                self.steps[i].1 = St::Pending;
                (0, true)
            }
            _ => unreachable!("{op:?} is not a run"),
        };
        // A run that goes ahead (or a deploy that keeps what the plan changed)
        // records the plan as it is now.
        if runs || (code == 0 && changed && matches!(op, Op::Deploy)) {
            self.ran_with_edited = self.plan_has_edited;
        }
        (code, runs)
    }
}

fn plan_text(model: &Model) -> String {
    let mut text = String::from("id: model\nphases:\n  - id: p\n    steps:\n");
    for n in model.plan_steps() {
        text.push_str(&format!(
            "      - id: s{n}\n        command: [sh, -c, \"if [ -f block-s{n} ]; then echo child-started; while [ ! -f go ]; do sleep 0.05; done; fi; echo run >> count-s{n}; test ! -f fail-s{n}\"]\n"
        ));
    }
    text
}

struct World {
    home: Home,
    dir: PathBuf,
    plan: PathBuf,
    serial: u64,
}

impl World {
    fn new(model: &Model) -> Self {
        let home = Home::new();
        let dir = plan_dir(&home, &[("plan.yaml", &plan_text(model))]);
        let plan = dir.join("plan.yaml");
        Self {
            home,
            dir,
            plan,
            serial: 0,
        }
    }

    fn deploy_args(&self) -> Vec<String> {
        vec![
            "deploy".into(),
            "--plan".into(),
            self.plan.display().to_string(),
        ]
    }

    fn run(&self, args: &[String]) -> Run {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.home.run_within(120, &args)
    }

    fn count(&self, n: usize) -> u64 {
        std::fs::read_to_string(self.dir.join(format!("count-s{n}")))
            .map(|t| t.lines().count() as u64)
            .unwrap_or(0)
    }

    /// Starts `args` with step `n` blocking, and returns once it runs.
    fn start_blocked_at(&self, n: usize, args: &[String]) -> std::process::Child {
        let block = self.dir.join(format!("block-s{n}"));
        std::fs::write(&block, "").unwrap();
        let mut child = self
            .home
            .command(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines {
            if line.unwrap().contains("child-started") {
                break;
            }
        }
        std::fs::remove_file(&block).unwrap();
        child
    }
}

/// Waits until no process of the step recorded running is alive (a killed runner's
/// step gets SIGTERM from the kernel and ends on its own).
fn wait_for_step_process_to_end(world: &World) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(world.home.state_file()).unwrap()).unwrap();
    let pids: Vec<u64> = state["deployment"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["attempts"].as_array()?.last()?["process"]["pid"].as_u64())
        .collect();
    for pid in pids {
        while Path::new(&format!("/proc/{pid}")).exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Applies `op` to the real binary and to the model; checks they agree.
fn step(world: &mut World, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    let expected = match op {
        Op::SetFails(n, fails) => {
            let marker = world.dir.join(format!("fail-s{n}"));
            if *fails {
                std::fs::write(&marker, "").unwrap();
            } else {
                let _ = std::fs::remove_file(&marker);
            }
            model.fails[*n] = *fails;
            None
        }
        Op::TogglePlan => {
            model.plan_has_edited = !model.plan_has_edited;
            std::fs::write(&world.plan, plan_text(model)).unwrap();
            None
        }
        Op::CleanState => {
            let r = world.run(&["clean-state".into(), "--yes".into()]);
            prop_assert_eq!(r.code, 0, "clean-state: {}", r.stderr);
            model.started = false;
            model.steps.clear();
            None
        }
        Op::CorruptAndRecover => {
            if !world.home.layout().backup_file().exists() {
                return Ok(());
            }
            std::fs::write(world.home.state_file(), b"{ not a state").unwrap();
            let r = world.run(&["recover".into(), "--from-backup".into()]);
            prop_assert_eq!(r.code, 0, "recover: {}", r.stderr);
            // The backup is the state one commit back: take the steps it shows.
            let v = world.home.status_json();
            model.started = v["deployment"]["status"] != "not_started";
            // Which of the plan's two shapes the recovered deployment last ran.
            let now = thinkube_engine::plan::sha256(plan_text(model).as_bytes());
            if v["deployment"]["plan_digest"]
                .as_str()
                .is_some_and(|d| d != now)
            {
                model.ran_with_edited = !model.plan_has_edited;
            } else {
                model.ran_with_edited = model.plan_has_edited;
            }
            model.steps = v["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let n: usize = s["id"].as_str().unwrap()[1..].parse().unwrap();
                    let st = match s["status"].as_str().unwrap() {
                        "pending" => St::Pending,
                        "completed" => St::Completed,
                        "failed" => St::Failed,
                        "interrupted" | "running" => St::Interrupted,
                        other => panic!("unexpected status {other}"),
                    };
                    (n, st)
                })
                .collect();
            None
        }
        Op::StopAt(n, kill) => {
            // Only when the run would reach step n.
            let mut trial = model.clone();
            let (code, runs) = trial.begin(op);
            let reaches = runs && {
                let mut reached = false;
                while let Some(i) = trial.next() {
                    if trial.steps[i].0 == *n {
                        reached = true;
                        break;
                    }
                    let m = trial.steps[i].0;
                    trial.runs[m] += 1;
                    if trial.fails[m] {
                        trial.steps[i].1 = St::Failed;
                        break;
                    }
                    trial.steps[i].1 = St::Completed;
                }
                reached
            };
            if !reaches || code != 0 {
                return Ok(());
            }
            let args = world.deploy_args();
            let child = world.start_blocked_at(*n, &args);
            let pid = child.id();
            if *kill {
                let mut child = KillOnDrop(child);
                child.0.kill().unwrap();
                child.0.wait().unwrap();
                wait_for_step_process_to_end(world);
            } else {
                let r = world.run(&["cancel".into()]);
                let status = wait_within(60, "a cancelled run", child);
                prop_assert_eq!(r.code, 0, "cancel: {}", r.stderr);
                prop_assert_eq!(status.code(), Some(130), "cancelled run of pid {}", pid);
            }
            let i = trial.steps.iter().position(|(m, _)| m == n).unwrap();
            trial.steps[i].1 = St::Interrupted;
            *model = trial;
            None
        }
        Op::Deploy | Op::Resume | Op::RetryAll | Op::RetryOne(_) => {
            let args = match op {
                Op::Deploy => world.deploy_args(),
                Op::Resume => vec!["resume".into()],
                Op::RetryAll => vec!["retry".into()],
                Op::RetryOne(n) => vec!["retry".into(), format!("s{n}")],
                _ => unreachable!(),
            };
            let (code, runs) = model.begin(op);
            let code = if runs { model.run() } else { code };
            Some((world.run(&args), code))
        }
    };
    if let Some((r, code)) = expected {
        prop_assert_eq!(
            r.code,
            code,
            "{:?}: stdout {} stderr {}",
            op,
            r.stdout,
            r.stderr
        );
    }
    check(world, model, op)
}

/// Everything the state must say after an operation.
fn check(world: &mut World, model: &Model, op: &Op) -> Result<(), TestCaseError> {
    if !world.home.state_file().exists() {
        prop_assert!(!model.started, "{:?}: no state, yet started", op);
        return Ok(());
    }
    let v = world.home.status_json();
    let serial = v["serial"].as_u64().unwrap();
    prop_assert!(
        serial >= world.serial,
        "{:?}: serial went back {} -> {}",
        op,
        world.serial,
        serial
    );
    world.serial = serial;
    prop_assert_eq!(
        v["deployment"]["status"].as_str().unwrap(),
        model.status(),
        "{:?}: {}",
        op,
        v
    );
    let shown: Vec<(String, String)> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = model
        .steps
        .iter()
        .map(|(n, s)| (format!("s{n}"), s.as_str().to_string()))
        .collect();
    if model.started {
        prop_assert_eq!(shown, expected, "{:?}", op);
    }
    for s in v["steps"].as_array().unwrap() {
        if s["status"] == "failed" {
            prop_assert!(
                s["attempts"].as_u64().unwrap() >= 1 && s["last_error"]["message"].is_string(),
                "{:?}: a failed step lost its error: {}",
                op,
                s
            );
        }
    }
    for n in 0..STEPS {
        prop_assert_eq!(world.count(n), model.runs[n], "{:?}: runs of s{}", op, n);
    }
    let events = world.run(&["events".into(), "--json".into()]);
    let seqs = event_seqs(&events.stdout);
    let expected_seqs: Vec<u64> = (1..=seqs.len() as u64).collect();
    prop_assert_eq!(seqs, expected_seqs, "{:?}: event numbers", op);
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_sequences_keep_every_promise(ops in proptest::collection::vec(op(), 1..14)) {
        let mut model = Model::new();
        let mut world = World::new(&model);
        for op in &ops {
            step(&mut world, &mut model, op)?;
        }
    }
}
