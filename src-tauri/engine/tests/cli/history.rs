//! `history`, `show-run`, `diff-runs`, `clean-state` and `cleanup` over real runs.

use crate::common::*;

const STEPS: [(&str, &str); 3] = [("a", "p"), ("b", "p"), ("c", "q")];

#[test]
fn history_lists_runs_and_show_run_and_diff_runs_explain_them() {
    let home = Home::new();
    let store = home.store();
    let first = run_deployment(
        &store,
        &STEPS,
        Some("b"),
        &[("gpu", false)],
        at("2026-01-01T00:00:00Z"),
    );
    let second = run_deployment(
        &store,
        &STEPS,
        None,
        &[("gpu", true)],
        at("2026-01-02T00:00:00Z"),
    );
    let rows: serde_json::Value =
        serde_json::from_str(&home.run(&["history", "--json"]).stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0]["run_id"].as_str(), rows[0]["outcome"].as_str()),
        (Some(first.as_str()), Some("failed"))
    );
    assert_eq!(
        (rows[1]["run_id"].as_str(), rows[1]["outcome"].as_str()),
        (Some(second.as_str()), Some("success"))
    );
    assert_eq!(rows[1]["flags"], serde_json::json!(["gpu"]));
    assert_eq!(rows[0]["duration_seconds"], 4);
    let human = home.run(&["history"]).stdout;
    assert!(
        human.contains(&first) && human.contains("failed") && human.contains("success"),
        "{human}"
    );

    let run: serde_json::Value =
        serde_json::from_str(&home.run(&["show-run", &first, "--json"]).stdout).unwrap();
    assert_eq!(
        run["steps_attempted"][1]["error"]["task"],
        "Install packages"
    );
    let text = home.run(&["show-run", &first]).stdout;
    assert!(
        text.contains("b attempt 1: Failed") && text.contains("task:  Install packages"),
        "{text}"
    );
    // The retry ran only b and c: a never ran again.
    let again: serde_json::Value =
        serde_json::from_str(&home.run(&["show-run", &second, "--json"]).stdout).unwrap();
    let steps: Vec<&str> = again["steps_attempted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["b", "c"]);

    let diff: serde_json::Value =
        serde_json::from_str(&home.run(&["diff-runs", &first, &second, "--json"]).stdout).unwrap();
    let fields: Vec<&str> = diff["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"outcome"), "{fields:?}");
    assert!(fields.contains(&"flags.gpu"), "{fields:?}");
    assert!(fields.contains(&"steps.b"), "{fields:?}");
    assert!(fields.contains(&"steps.a"), "{fields:?}");
    let text = home.run(&["diff-runs", &first, &second]).stdout;
    assert!(text.contains("flags.gpu: false -> true"), "{text}");
    assert!(
        home.run(&["diff-runs", &first, &first])
            .stdout
            .contains("do not differ")
    );
}

#[test]
fn unknown_or_hostile_run_ids_exit_2() {
    let home = Home::new();
    for id in ["nope", "../deployment-state", "/etc/passwd"] {
        home.run(&["show-run", id]).expect(2, &["there is no run"]);
    }
    assert!(home.run(&["history"]).stdout.contains("No runs yet"));
}

#[test]
fn clean_state_archives_progress_and_keeps_inventory_and_history() {
    let home = Home::new();
    let store = home.store();
    let run = run_deployment(
        &store,
        &STEPS,
        Some("b"),
        &[("gpu", true)],
        at("2026-01-01T00:00:00Z"),
    );
    let inventory = home.layout().inventory_file();
    std::fs::write(&inventory, "all:\n  hosts:\n    localhost: {}\n").unwrap();
    let lineage = home.status_json()["lineage"].clone();
    let before = home.status_json()["serial"].as_u64().unwrap();
    home.run(&["clean-state"]).expect(2, &["pass --yes"]);
    assert_eq!(
        home.status_json()["deployment"]["status"],
        "failed",
        "nothing changed without confirmation"
    );
    let r = home.run(&["clean-state", "--yes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("archived"), "{}", r.stdout);
    let v = home.status_json();
    assert_eq!(v["deployment"]["status"], "not_started");
    assert_eq!(v["steps"], serde_json::json!([]));
    assert_eq!(v["lineage"], lineage);
    assert!(v["serial"].as_u64().unwrap() > before);
    assert_eq!(
        std::fs::read_to_string(&inventory).unwrap(),
        "all:\n  hosts:\n    localhost: {}\n"
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.state_file()).unwrap()).unwrap();
    assert_eq!(
        state["deployment"]["configuration"]["flags"]["gpu"], true,
        "configuration kept"
    );
    let archived: Vec<_> = std::fs::read_dir(home.path().join("archive/deployments"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(archived.len(), 1);
    let a: serde_json::Value =
        serde_json::from_slice(&std::fs::read(archived[0].path()).unwrap()).unwrap();
    assert_eq!(a["deployment"]["status"], "failed");
    assert!(
        home.run(&["history"]).stdout.contains(&run),
        "history keeps the run"
    );
    assert!(home.run(&["events"]).stdout.contains("state_cleaned"));
    assert!(
        home.run(&["clean-state", "--yes"])
            .stdout
            .contains("no progress to clear")
    );
}

#[test]
fn cleanup_moves_old_finished_runs_out_of_history() {
    let home = Home::new();
    let store = home.store();
    let old = run_deployment(&store, &STEPS, Some("b"), &[], at("2020-01-01T00:00:00Z"));
    let latest = run_deployment(&store, &STEPS, None, &[], at("2020-01-02T00:00:00Z"));
    let r = home.run(&["cleanup", "--older-than", "30"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Moved 1 run(s)"), "{}", r.stdout);
    assert!(
        home.path()
            .join(format!("archive/runs/{old}.json"))
            .is_file()
    );
    let h = home.run(&["history"]).stdout;
    assert!(!h.contains(&old) && h.contains(&latest), "{h}");
    assert!(
        home.run(&["cleanup", "--older-than", "30"])
            .stdout
            .contains("No finished runs older than 30 days")
    );
}

#[test]
fn an_unreadable_run_file_is_named_and_left_alone_while_the_others_are_listed() {
    let home = Home::new();
    let store = home.store();
    let good = run_deployment(&store, &STEPS, None, &[], at("2026-01-01T00:00:00Z"));
    let bad = home.layout().runs_dir().join("run-torn.json");
    std::fs::write(&bad, b"{\"run_id\": \"run-torn\", \"kind\": ").unwrap();

    // The CLI lists the readable run and names the other on stderr.
    let r = home.run(&["history", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["run_id"], good.as_str());
    assert!(
        r.stderr.contains("skipping unreadable run file") && r.stderr.contains("run-torn.json"),
        "{}",
        r.stderr
    );

    // The app's listing carries it too, with the reason, so the window can show it.
    let listing =
        thinkube_engine::report::history::listing(&store, at("2026-01-02T00:00:00Z")).unwrap();
    assert_eq!(listing.rows.len(), 1);
    assert_eq!(listing.unreadable.len(), 1);
    assert_eq!(listing.unreadable[0].path, bad.display().to_string());
    assert!(!listing.unreadable[0].problem.is_empty());

    // Nothing was rewritten or moved.
    assert_eq!(
        std::fs::read(&bad).unwrap(),
        b"{\"run_id\": \"run-torn\", \"kind\": "
    );
}

/// `history` is a table people read: times to the second in their own time zone, and
/// every column starting where its header does (nanoseconds used to push them apart).
#[test]
fn history_shows_local_times_to_the_second_in_aligned_columns() {
    let home = Home::new();
    let store = home.store();
    // A run that began at a time with a fraction of a second, as `now()` gives.
    let first = run_deployment(
        &store,
        &STEPS,
        Some("b"),
        &[],
        at("2026-01-01T00:00:00.123456789Z"),
    );
    let second = run_deployment(&store, &STEPS, None, &[], at("2026-03-01T23:59:59Z"));
    // India Standard Time, written as a POSIX rule so no zone files are needed.
    let out = home
        .command(&["history"])
        .env("TZ", "IST-5:30")
        .output()
        .unwrap();
    let human = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{human}");
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(lines.len(), 3, "{human}");
    assert!(
        lines[1].starts_with(&first) && lines[2].starts_with(&second),
        "{human}"
    );
    assert!(lines[1].contains("2026-01-01 05:30:00 +0530"), "{human}");
    assert!(lines[2].contains("2026-03-02 05:29:59 +0530"), "{human}");
    assert!(!human.contains(".123") && !human.contains("Z "), "{human}");
    for header in ["STARTED", "ENDED", "OUTCOME", "PLAN"] {
        let col = lines[0].find(header).unwrap();
        for row in &lines[1..] {
            let cell = &row[col..];
            assert!(
                col > 0 && row.as_bytes()[col - 1] == b' ' && !cell.starts_with(' '),
                "column {header} does not line up:\n{human}"
            );
        }
    }
    // JSON keeps RFC 3339 UTC.
    let rows: serde_json::Value =
        serde_json::from_str(&home.run(&["history", "--json"]).stdout).unwrap();
    assert_eq!(rows[1]["started_at"], "2026-03-01T23:59:59Z");
}

/// A run file whose `run_id` was `../deployment-state` once made `cleanup` move the
/// live state into `archive/`. Ids read from files are checked against the file's
/// name before they make a path: such a run is named as unreadable and left alone.
#[test]
fn a_run_id_that_is_a_path_never_moves_another_file() {
    let home = Home::new();
    let store = home.store();
    let old = run_deployment(&store, &STEPS, Some("b"), &[], at("2020-01-01T00:00:00Z"));
    run_deployment(&store, &STEPS, None, &[], at("2020-01-02T00:00:00Z"));
    let runs = home.layout().runs_dir();
    let mut run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(runs.join(format!("{old}.json"))).unwrap()).unwrap();
    run["run_id"] = serde_json::json!("../deployment-state");
    let hostile = runs.join("hostile.json");
    let bytes = serde_json::to_vec_pretty(&run).unwrap();
    std::fs::write(&hostile, &bytes).unwrap();

    let r = home.run(&["cleanup", "--older-than", "30"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Moved 1 run(s)"), "{}", r.stdout);
    assert!(
        r.stdout.contains("left unreadable run file in place") && r.stdout.contains("hostile.json"),
        "{}",
        r.stdout
    );
    // The live state is where it was, and still the same deployment.
    assert!(home.state_file().is_file());
    assert_eq!(home.status_json()["deployment"]["status"], "completed");
    assert_eq!(std::fs::read(&hostile).unwrap(), bytes);
    assert!(!home.path().join("archive/deployment-state.json").exists());

    let h = home.run(&["history", "--json"]);
    assert_eq!(h.code, 0, "{}", h.stderr);
    assert!(
        h.stderr.contains("hostile.json") && h.stderr.contains("is not the file's name"),
        "{}",
        h.stderr
    );
}
