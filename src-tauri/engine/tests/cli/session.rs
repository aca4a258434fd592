//! The run API behind deploy, resume and retry: what each request does in each
//! state, one durable commit per transition, and history of every run.

use thinkube_engine::EngineError;
use thinkube_engine::run::session::{Begun, Request, RunContext, RunSession, RunSummary};
use thinkube_engine::state::lock::LockWait;
use thinkube_engine::state::model::{AttemptOutcome, DeploymentStatus, RunOutcome, StepError};
use thinkube_engine::state::store::Store;

use crate::common::*;

const STEPS: [(&str, &str); 3] = [("a", "p"), ("b", "p"), ("c", "q")];

fn ctx() -> RunContext {
    RunContext {
        program: "tests".into(),
        boot_id: Some("boot-1".into()),
        wait: LockWait::NoWait,
    }
}

fn begin(store: &Store, request: Request) -> Result<RunSession, EngineError> {
    // Real time: runs that start in order must be listed in order.
    match RunSession::begin(
        store,
        request,
        &ctx(),
        thinkube_engine::timestamp::Timestamp::now(),
    )? {
        Begun::Run(s) => Ok(*s),
        Begun::AlreadyCompleted { .. } => panic!("already completed"),
    }
}

fn deploy() -> Request {
    Request::Deploy { plan: plan(&STEPS) }
}

/// Runs every remaining step; `fail` fails that one and stops.
fn run_steps(mut s: RunSession, fail: Option<&str>) -> RunSummary {
    let t = at("2026-01-01T00:00:01Z");
    while let Some(step) = s.next_step().map(|x| x.id.clone()) {
        s.start_step(&step, None, None, t).unwrap();
        if fail == Some(step.as_str()) {
            s.fail_step(&step, StepError::message("it broke"), t)
                .unwrap();
            break;
        }
        s.complete_step(&step, t).unwrap();
    }
    s.finish(t).unwrap()
}

fn st(list: &[(&str, &str, u64)]) -> Vec<(String, String, u64)> {
    list.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
        .collect()
}

#[test]
fn deploy_runs_every_step_then_says_completed_and_does_nothing() {
    let home = Home::new();
    let store = home.store();
    let summary = run_steps(begin(&store, deploy()).unwrap(), None);
    assert_eq!(
        (summary.outcome, summary.status),
        (RunOutcome::Success, DeploymentStatus::Completed)
    );
    let again = RunSession::begin(&store, deploy(), &ctx(), at("2026-01-02T00:00:00Z")).unwrap();
    assert!(matches!(again, Begun::AlreadyCompleted { .. }));
    let kinds: Vec<String> = home
        .run(&["events", "--json"])
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("deployment_started")
    );
    assert_eq!(kinds.iter().filter(|k| *k == "step_completed").count(), 3);
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("deployment_finished")
    );
    let history: serde_json::Value =
        serde_json::from_str(&home.run(&["history", "--json"]).stdout).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 1);
    assert_eq!(history[0]["outcome"], "success");
}

#[test]
fn a_failure_stops_deploy_and_retry_runs_only_the_failed_step_then_continues() {
    let home = Home::new();
    let store = home.store();
    let summary = run_steps(begin(&store, deploy()).unwrap(), Some("b"));
    assert_eq!(
        (summary.outcome, summary.status),
        (RunOutcome::Failed, DeploymentStatus::Failed)
    );
    assert_eq!(
        steps_of(&home),
        st(&[
            ("a", "completed", 1),
            ("b", "failed", 1),
            ("c", "pending", 0)
        ])
    );
    let err = begin(&store, deploy()).unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(
        err.to_string().contains("failed steps (b)") && err.to_string().contains("retry"),
        "{err}"
    );
    let err = begin(&store, Request::Resume { plan: None }).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("nothing to resume"), "{err}");
    let s = begin(
        &store,
        Request::Retry {
            steps: vec![],
            plan: None,
        },
    )
    .unwrap();
    assert_eq!(s.next_step().unwrap().id, "b");
    let summary = run_steps(s, None);
    assert_eq!(summary.status, DeploymentStatus::Completed);
    // a ran once, b twice (the failure stays in its history), c once.
    assert_eq!(
        steps_of(&home),
        st(&[
            ("a", "completed", 1),
            ("b", "completed", 2),
            ("c", "completed", 1)
        ])
    );
    let run: serde_json::Value =
        serde_json::from_str(&home.run(&["show-run", &summary.run_id, "--json"]).stdout).unwrap();
    assert_eq!(run["kind"], "retry");
    let ran: Vec<&str> = run["steps_attempted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(ran, ["b", "c"]);
}

#[test]
fn a_run_that_died_mid_step_is_resumed_and_the_step_runs_again() {
    let home = Home::new();
    let store = home.store();
    let mut s = begin(&store, deploy()).unwrap();
    s.start_step("a", None, None, at("2026-01-01T00:00:01Z"))
        .unwrap();
    s.complete_step("a", at("2026-01-01T00:00:02Z")).unwrap();
    s.start_step("b", None, None, at("2026-01-01T00:00:03Z"))
        .unwrap();
    drop(s); // the process "dies": no finish
    assert_eq!(
        steps_of(&home)[1],
        ("b".to_string(), "interrupted".to_string(), 1)
    );
    assert_eq!(home.status_json()["deployment"]["status"], "interrupted");
    let summary = run_steps(begin(&store, Request::Resume { plan: None }).unwrap(), None);
    assert_eq!(summary.status, DeploymentStatus::Completed);
    let state = store
        .load(at("2026-01-02T00:00:00Z"))
        .unwrap()
        .unwrap()
        .state;
    let b = state.deployment.step("b").unwrap();
    let outcomes: Vec<AttemptOutcome> = b.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [AttemptOutcome::Interrupted, AttemptOutcome::Success]
    );
    // The dead run is in history, as interrupted.
    let history: serde_json::Value =
        serde_json::from_str(&home.run(&["history", "--json"]).stdout).unwrap();
    let outcomes: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["interrupted", "success"]);
}

#[test]
fn stopping_a_run_records_the_running_step_as_interrupted() {
    let home = Home::new();
    let store = home.store();
    let mut s = begin(&store, deploy()).unwrap();
    s.start_step("a", None, None, at("2026-01-01T00:00:01Z"))
        .unwrap();
    let summary = s.finish(at("2026-01-01T00:00:02Z")).unwrap();
    assert_eq!(
        (summary.outcome, summary.status),
        (RunOutcome::Interrupted, DeploymentStatus::Interrupted)
    );
    assert_eq!(
        steps_of(&home)[0],
        ("a".to_string(), "interrupted".to_string(), 1)
    );
    // deploy resumes an interrupted deployment.
    assert_eq!(
        run_steps(begin(&store, deploy()).unwrap(), None).status,
        DeploymentStatus::Completed
    );
}

#[test]
fn retry_of_named_steps_reruns_only_those() {
    let home = Home::new();
    let store = home.store();
    run_steps(begin(&store, deploy()).unwrap(), None);
    let err = begin(
        &store,
        Request::Retry {
            steps: vec![],
            plan: None,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("nothing to retry"), "{err}");
    let before = std::fs::read(home.state_file()).unwrap();
    let err = begin(
        &store,
        Request::Retry {
            steps: vec!["a".into(), "zzz".into()],
            plan: None,
        },
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("no step `zzz`"), "{err}");
    assert_eq!(
        std::fs::read(home.state_file()).unwrap(),
        before,
        "a refused retry changes nothing"
    );
    let s = begin(
        &store,
        Request::Retry {
            steps: vec!["a".into()],
            plan: None,
        },
    )
    .unwrap();
    run_steps(s, None);
    assert_eq!(
        steps_of(&home),
        st(&[
            ("a", "completed", 2),
            ("b", "completed", 1),
            ("c", "completed", 1)
        ])
    );
}

#[test]
fn requests_that_make_no_sense_here_are_refused() {
    let home = Home::new();
    let store = home.store();
    assert!(
        begin(&store, Request::Resume { plan: None })
            .unwrap_err()
            .to_string()
            .contains("nothing to resume: the deployment is not_started")
    );
    assert!(
        begin(
            &store,
            Request::Retry {
                steps: vec![],
                plan: None
            }
        )
        .unwrap_err()
        .to_string()
        .contains("nothing to retry")
    );
    assert!(!home.state_file().exists(), "refusals write nothing");
}

#[test]
fn a_step_whose_process_outlived_its_runner_blocks_the_next_run_and_clean_state() {
    let home = Home::new();
    let store = home.store();
    let mut s = begin(&store, deploy()).unwrap();
    // This test process plays the still-running child.
    let me = thinkube_engine::state::lock::current_process();
    s.start_step("a", Some(me), None, at("2026-01-01T00:00:01Z"))
        .unwrap();
    drop(s);
    let err = begin(&store, deploy()).unwrap_err();
    assert_eq!(err.exit_code(), 3);
    assert!(
        err.to_string()
            .contains(&format!("still running in pid {}", me.pid)),
        "{err}"
    );
    assert_eq!(steps_of(&home)[0].1, "running");
    // clean-state cleared it, and a new deploy then ran the same step beside the
    // live process: it is refused the same way, and the state is unchanged.
    let before = std::fs::read(home.state_file()).unwrap();
    home.run(&["clean-state", "--yes"]).expect(
        3,
        &[
            &format!("step `a` is still running in pid {}", me.pid),
            "kill",
        ],
    );
    assert_eq!(std::fs::read(home.state_file()).unwrap(), before);
}

#[test]
fn a_deployment_awaiting_restart_continues_only_after_one() {
    let home = Home::new();
    let store = home.store();
    let mut s = begin(&store, deploy()).unwrap();
    s.start_step("a", None, None, at("2026-01-01T00:00:01Z"))
        .unwrap();
    s.complete_step("a", at("2026-01-01T00:00:02Z")).unwrap();
    drop(s);
    // Put the deployment in awaiting_restart as a requires_restart step will.
    let mut w = store
        .open_writer("t", LockWait::NoWait, at("2026-01-01T00:01:00Z"))
        .unwrap();
    let thinkube_engine::state::lifecycle::AnyDeployment::Interrupted(d) =
        thinkube_engine::state::lifecycle::AnyDeployment::from_record(w.state().deployment.clone())
            .unwrap()
    else {
        panic!()
    };
    let waiting = d
        .resume()
        .await_restart("a", Some("boot-1".into()), at("2026-01-01T00:01:00Z"))
        .unwrap();
    let rec = waiting.erase().into_record();
    w.commit(at("2026-01-01T00:01:00Z"), vec![], |st| {
        st.deployment = rec;
        Ok(())
    })
    .unwrap();
    w.finish().unwrap();
    assert_eq!(
        home.status_json()["deployment"]["status"],
        "awaiting_restart"
    );
    let err = begin(&store, deploy()).unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().contains("has not restarted"), "{err}");
    let after_reboot = RunContext {
        boot_id: Some("boot-2".into()),
        ..ctx()
    };
    let Begun::Run(s) =
        RunSession::begin(&store, deploy(), &after_reboot, at("2026-01-02T00:00:00Z")).unwrap()
    else {
        panic!()
    };
    assert_eq!(s.next_step().unwrap().id, "b");
    assert_eq!(run_steps(*s, None).status, DeploymentStatus::Completed);
    assert_eq!(
        steps_of(&home)[0],
        ("a".to_string(), "completed".to_string(), 1)
    );
}

/// After a SIGKILL, `status` said interrupted while `history` and `show-run` said
/// running, and `status` gave `finished_at` as the time of asking (different at
/// every call). Every reader now tells the same story, with the end taken as the
/// last moment the dead run recorded, and the next writer records that same story.
#[test]
fn a_run_whose_process_died_reads_the_same_everywhere_and_every_time() {
    let home = Home::new();
    let store = home.store();
    let mut s = begin(&store, deploy()).unwrap();
    let run_id = s.run_id().to_string();
    s.start_step("a", None, None, at("2026-01-01T00:00:01Z"))
        .unwrap();
    drop(s); // as a SIGKILL leaves it: no end recorded, no process known
    let first = home.status_json();
    let second = home.status_json();
    assert_eq!(first["current_run"]["outcome"], "interrupted");
    let end = &first["current_run"]["finished_at"];
    assert!(end.is_string(), "{first}");
    assert_eq!(
        second["current_run"]["finished_at"], *end,
        "finished_at moves"
    );
    let history: serde_json::Value =
        serde_json::from_str(&home.run(&["history", "--json"]).stdout).unwrap();
    let row = history
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == run_id.as_str())
        .unwrap();
    assert_eq!(row["outcome"], "interrupted", "{history}");
    let shown: serde_json::Value =
        serde_json::from_str(&home.run(&["show-run", &run_id, "--json"]).stdout).unwrap();
    assert_eq!(shown["outcome"], "interrupted", "{shown}");
    assert_eq!(shown["finished_at"], *end);
    // The next writer records what the readers showed.
    assert_eq!(home.run(&["clean-state", "--yes"]).code, 0);
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.layout().run_file(&run_id)).unwrap()).unwrap();
    assert_eq!(run["outcome"], "interrupted");
    assert_eq!(run["finished_at"], *end);
}
