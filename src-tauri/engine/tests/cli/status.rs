//! `status`: the contract's JSON, the human view, and that it only reads.

use crate::common::*;

#[test]
fn a_fresh_home_has_no_deployment_and_status_writes_nothing() {
    let home = Home::new();
    let r = home.run(&["status"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("No deployment yet"), "{}", r.stdout);
    let v = home.status_json();
    assert_eq!(v["deployment"]["status"], "not_started");
    assert_eq!(v["deployment"]["id"], serde_json::Value::Null);
    assert_eq!(v["lineage"], serde_json::Value::Null);
    assert_eq!(v["serial"], 0);
    assert_eq!(v["environment"], "default");
    assert_eq!(v["progress"]["total"], 0);
    assert_eq!(v["progress"]["percentage"], 0);
    assert_eq!(v["lock"]["held"], false);
    assert_eq!(v["current_run"], serde_json::Value::Null);
    assert!(!home.path().exists(), "status created files");
}

#[test]
fn a_failed_deployment_is_failed_with_its_error_and_steps_in_plan_order() {
    let home = Home::new();
    let steps = [("a", "one"), ("b", "one"), ("c", "two"), ("d", "two")];
    run_deployment(
        &home.store(),
        &steps,
        Some("c"),
        &[],
        at("2026-01-01T00:00:00Z"),
    );
    let before = std::fs::read(home.state_file()).unwrap();
    let v = home.status_json();
    assert_eq!(v["schema_version"], 3);
    assert_eq!(v["deployment"]["status"], "failed");
    assert_eq!(v["deployment"]["plan_id"], "test-plan");
    let ids: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    let c = &v["steps"][2];
    assert_eq!(c["status"], "failed");
    assert_eq!(c["attempts"], 1);
    assert_eq!(c["last_error"]["task"], "Install packages");
    assert_eq!(c["last_error"]["host"], "localhost");
    assert_eq!(c["last_error"]["exit_code"], 2);
    assert_eq!(v["steps"][3]["last_error"], serde_json::Value::Null);
    let p = &v["progress"];
    assert_eq!(
        (
            p["completed"].as_u64(),
            p["failed"].as_u64(),
            p["pending"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(
        (p["total"].as_u64(), p["percentage"].as_u64()),
        (Some(4), Some(50))
    );
    assert_eq!(v["current_run"]["outcome"], "failed");
    let human = home.run(&["status"]).stdout;
    for want in [
        "failed",
        "✓ a",
        "✗ c",
        "○ d",
        "Last error: c: the task failed",
        "task \"Install packages\"",
        "thinkube-deploy retry",
    ] {
        assert!(human.contains(want), "missing {want:?} in:\n{human}");
    }
    assert_eq!(
        std::fs::read(home.state_file()).unwrap(),
        before,
        "status changed the state"
    );
}

#[test]
fn percentage_is_floored_and_skipped_steps_are_not_counted() {
    let home = Home::new();
    let store = home.store();
    let mut w = store
        .open_writer(
            "t",
            thinkube_engine::state::lock::LockWait::NoWait,
            at("2026-01-01T00:00:00Z"),
        )
        .unwrap();
    let mut p = plan(&[("a", "x"), ("b", "x"), ("c", "x"), ("gpu", "x")]);
    p.steps[3].skip_reason = Some("flag gpu is off".into());
    let mut d = not_started().start(p, at("2026-01-01T00:00:00Z")).unwrap();
    d.start_step("a", "r", None, None, at("2026-01-01T00:00:01Z"))
        .unwrap();
    d.complete_step("a", at("2026-01-01T00:00:02Z")).unwrap();
    let rec = d.settle(at("2026-01-01T00:00:03Z")).erase().into_record();
    w.commit(at("2026-01-01T00:00:03Z"), vec![], |s| {
        s.deployment = rec;
        Ok(())
    })
    .unwrap();
    drop(w);
    let v = home.status_json();
    assert_eq!(v["progress"]["total"], 3);
    assert_eq!(v["progress"]["skipped"], 1);
    assert_eq!(v["progress"]["percentage"], 33);
    assert_eq!(v["deployment"]["status"], "interrupted");
    assert!(
        home.run(&["status"])
            .stdout
            .contains("(skipped: flag gpu is off)")
    );
}

#[test]
fn named_environments_are_separate_and_names_are_validated() {
    let home = Home::new();
    let layout = thinkube_engine::paths::Layout::new(
        home.path(),
        thinkube_engine::paths::EnvName::parse("lab").unwrap(),
    );
    let store = thinkube_engine::state::store::Store::new(
        layout.clone(),
        thinkube_engine::state::lock::Identity::new("t"),
    );
    run_deployment(&store, &[("a", "p")], None, &[], at("2026-01-01T00:00:00Z"));
    assert!(
        home.path()
            .join("environments/lab/deployment-state.json")
            .is_file()
    );
    let v: serde_json::Value =
        serde_json::from_str(&home.run(&["status", "--json", "--env", "lab"]).stdout).unwrap();
    assert_eq!(v["environment"], "lab");
    assert_eq!(v["deployment"]["status"], "completed");
    assert_eq!(home.status_json()["deployment"]["status"], "not_started");
    for bad in ["../x", "a/b", "", "x y"] {
        home.run(&["status", "--env", bad])
            .expect(2, &["not a valid environment name"]);
    }
}

#[test]
fn a_running_step_of_a_dead_process_shows_as_interrupted_without_writing() {
    let home = Home::new();
    let store = home.store();
    let mut w = store
        .open_writer(
            "t",
            thinkube_engine::state::lock::LockWait::NoWait,
            at("2026-01-01T00:00:00Z"),
        )
        .unwrap();
    let mut d = not_started()
        .start(plan(&[("a", "p"), ("b", "p")]), at("2026-01-01T00:00:00Z"))
        .unwrap();
    let gone = thinkube_engine::state::model::ProcessRef {
        pid: u32::MAX - 7,
        start_ticks: Some(1),
    };
    d.start_step("a", "r", Some(gone), None, at("2026-01-01T00:00:01Z"))
        .unwrap();
    let rec = d.erase().into_record();
    w.commit(at("2026-01-01T00:00:01Z"), vec![], |s| {
        s.deployment = rec;
        Ok(())
    })
    .unwrap();
    drop(w);
    let before = std::fs::read(home.state_file()).unwrap();
    let v = home.status_json();
    assert_eq!(v["steps"][0]["status"], "interrupted");
    assert_eq!(v["deployment"]["status"], "interrupted");
    assert_eq!(std::fs::read(home.state_file()).unwrap(), before);
    // The next writer records it for real.
    let w = store
        .open_writer(
            "t",
            thinkube_engine::state::lock::LockWait::NoWait,
            at("2026-01-01T00:01:00Z"),
        )
        .unwrap();
    assert_eq!(
        w.state().deployment.steps[0].status,
        thinkube_engine::state::model::StepStatus::Interrupted
    );
    assert_eq!(
        w.state().deployment.steps[0].attempts[0].outcome,
        thinkube_engine::state::model::AttemptOutcome::Interrupted
    );
}

#[test]
fn bad_usage_exits_2() {
    let home = Home::new();
    home.run(&["no-such-command"]).expect(2, &[]);
    home.run(&["status", "--no-such-flag"]).expect(2, &[]);
    home.run(&["recover"]).expect(2, &[]);
    assert_eq!(home.run(&["--help"]).code, 0);
}
