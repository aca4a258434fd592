//! `deploy`, `resume`, `retry` and `cancel` with real `ansible-playbook` on
//! localhost and real command steps.

use std::path::Path;

use crate::common::*;
use std::io::{BufRead, BufReader};

fn count_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

const PLAYBOOK_FAILS_AT_SECOND_TASK: &str = "- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"
  tasks:
    - name: First task works
      ansible.builtin.debug:
        msg: fine
    - name: Second task needs the fix file
      ansible.builtin.fail:
        msg: the fix file is missing
      when: not (lookup('env', 'FIXED_FILE') is exists)
    - name: Third task
      ansible.builtin.debug:
        msg: done
";

/// Steps: `count-a` (counts its runs), `fragile` (a playbook failing at its second
/// task until `fixed` exists), `count-c`.
fn fragile_plan(home: &Home) -> std::path::PathBuf {
    let plan = "id: fragile
phases:
  - id: one
    steps:
      - id: count-a
        command: [sh, -c, \"echo run >> count-a\"]
      - id: fragile
        playbook: fragile.yaml
  - id: two
    steps:
      - id: count-c
        command: [sh, -c, \"echo run >> count-c\"]
";
    // The playbook learns where the fix file is from FIXED_FILE (see run_with_fixed).
    let dir = plan_dir(
        home,
        &[
            ("plan.yaml", plan),
            ("fragile.yaml", PLAYBOOK_FAILS_AT_SECOND_TASK),
        ],
    );
    dir.join("plan.yaml")
}

fn run_with_fixed(home: &Home, args: &[&str]) -> Run {
    let mut c = home.command(args);
    c.env("FIXED_FILE", home.outside("fixed"));
    Run::from(c.output().unwrap())
}

#[test]
fn a_failure_names_the_task_and_retry_runs_only_the_failed_step() {
    let home = Home::new();
    let plan = fragile_plan(&home);
    let dir = plan.parent().unwrap().to_path_buf();
    let r = run_with_fixed(&home, &["deploy", "--plan", plan.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("✗ fragile: the fix file is missing"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("task \"Second task needs the fix file\"")
            && r.stdout.contains("host localhost"),
        "{}",
        r.stdout
    );
    let v = home.status_json();
    assert_eq!(v["deployment"]["status"], "failed");
    let e = &v["steps"][1]["last_error"];
    assert_eq!(e["task"], "Second task needs the fix file");
    assert_eq!(e["host"], "localhost");
    assert_eq!(e["exit_code"], 2);
    assert_eq!(e["message"], "the fix file is missing");
    // The attempt's whole output is in its log.
    let run_id = v["current_run"]["run_id"].as_str().unwrap().to_string();
    let log =
        std::fs::read_to_string(home.path().join(format!("logs/{run_id}/fragile-1.log"))).unwrap();
    assert!(
        log.contains("TASK [First task works]") && log.contains("failed: [localhost]"),
        "{log}"
    );
    // deploy refuses and points at retry; nothing runs.
    let again = run_with_fixed(&home, &["deploy", "--plan", plan.to_str().unwrap()]);
    again.expect(1, &["failed steps (fragile)", "retry"]);
    std::fs::write(home.outside("fixed"), "").unwrap();
    let r = run_with_fixed(&home, &["retry"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        count_lines(&dir.join("count-a")),
        1,
        "a completed step ran again"
    );
    assert_eq!(count_lines(&dir.join("count-c")), 1);
    assert_eq!(
        steps_of(&home),
        [
            ("count-a".into(), "completed".into(), 1),
            ("fragile".into(), "completed".into(), 2),
            ("count-c".into(), "completed".into(), 1)
        ]
    );
}

#[test]
fn the_demo_plan_deploys_to_this_machine_and_is_safe_to_run_again() {
    let home = Home::new();
    let port = free_port().to_string();
    let var = format!("demo_port={port}");
    let r = home.run(&["deploy", "--var", &var]);
    let stop = || {
        let _ = std::process::Command::new("sh")
            .arg(home.path().join("demo/bin/demo-server.sh"))
            .args(["stop", home.path().join("demo").to_str().unwrap()])
            .output();
    };
    if r.code != 0 {
        stop();
    }
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = home.status_json();
    assert_eq!(v["deployment"]["status"], "completed");
    assert_eq!(v["progress"]["completed"], 8);
    assert!(home.path().join("demo/www/report.html").is_file());
    // Again: completed, nothing runs. Then a named step runs again on its own.
    assert!(home.run(&["deploy"]).stdout.contains("already completed"));
    let r = home.run(&["retry", "check-http"]);
    stop();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let steps = steps_of(&home);
    assert!(
        steps
            .iter()
            .all(|(id, st, n)| st == "completed" && *n == if id == "check-http" { 2 } else { 1 }),
        "{steps:?}"
    );
    let history: serde_json::Value =
        serde_json::from_str(&home.run(&["history", "--json"]).stdout).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 2);
    // Everything the installer and its demo wrote is private to the user.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    for file in crate::migration::walk(home.path()) {
        assert_eq!(
            mode(&file),
            0o600,
            "{} is {:o}",
            file.display(),
            mode(&file)
        );
        let mut dir = file.parent().unwrap();
        while dir.starts_with(home.path()) {
            assert_eq!(mode(dir), 0o700, "{} is {:o}", dir.display(), mode(dir));
            dir = dir.parent().unwrap();
        }
    }
}

#[test]
fn a_flag_turned_off_skips_its_step_with_the_reason() {
    let home = Home::new();
    let r = home.run(&["plan", "show", "--flag", "report=false"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("report: Write the deployment report")
            && r.stdout.contains("[not applicable: flag report is off]"),
        "{}",
        r.stdout
    );
    for plan in ["demo", "thinkube", "k0rdent-azure"] {
        let r = home.run(&["plan", "show", "--plan", plan, "--json"]);
        assert_eq!(r.code, 0, "{plan}: {}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["id"], plan);
    }
    home.run(&["plan", "show", "--flag", "nope=true"])
        .expect(2, &["no flag `nope`"]);
    home.run(&["plan", "show", "--flag", "report=maybe"])
        .expect(2, &["not true or false"]);
    home.run(&["plan", "show", "--plan", "no-such-plan"])
        .expect(2, &["built-in plans: demo, thinkube, k0rdent-azure"]);
}

/// `plan show` says which variables a run needs a value for: no default, and used by
/// a step that applies with the flags given (the wizard's review asks for them).
#[test]
fn plan_show_marks_the_variables_a_run_needs() {
    let home = Home::new();
    let dir = plan_dir(
        &home,
        &[(
            "plan.yaml",
            "flags:\n  - name: extra\n    default: false\nvars:\n  - name: root\n  - name: port\n    default: \"80\"\n  - name: unused\nphases:\n  - id: p\n    steps:\n      - id: a\n        command: [echo, \"${port}\"]\n      - id: b\n        when: extra\n        command: [ls, \"${root}\"]\n",
        )],
    );
    let plan = dir.join("plan.yaml");
    let required = |flags: &[&str]| {
        let mut args = vec!["plan", "show", "--plan", plan.to_str().unwrap(), "--json"];
        args.extend_from_slice(flags);
        let r = home.run(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v["vars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["name"].as_str().unwrap().to_string(),
                    x["required"].as_bool().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let names = |list: &[(&str, bool)]| {
        list.iter()
            .map(|(n, r)| (n.to_string(), *r))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        required(&[]),
        names(&[("root", false), ("port", false), ("unused", false)])
    );
    assert_eq!(
        required(&["--flag", "extra=true"]),
        names(&[("root", true), ("port", false), ("unused", false)])
    );
}

#[test]
fn an_invalid_plan_is_refused_before_anything_runs() {
    let home = Home::new();
    let dir = plan_dir(
        &home,
        &[(
            "plan.yaml",
            "phases:\n  - id: p\n    steps:\n      - id: s\n        command: [\"true\"]\n        retires: 2\n",
        )],
    );
    let plan = dir.join("plan.yaml");
    home.run(&["deploy", "--plan", plan.to_str().unwrap()])
        .expect(2, &["plan.yaml:6:9", "unknown field `retires`"]);
    assert!(!home.path().exists(), "nothing was written");
}

#[test]
fn a_playbook_with_a_syntax_error_fails_with_ansibles_message() {
    let home = Home::new();
    let dir = plan_dir(
        &home,
        &[
            (
                "plan.yaml",
                "phases:\n  - id: p\n    steps:\n      - id: broken\n        playbook: broken.yaml\n",
            ),
            (
                "broken.yaml",
                "- hosts: localhost\n  tasks:\n    - name: x\n      no.such.module_at_all: {}\n",
            ),
        ],
    );
    let r = home.run(&["deploy", "--plan", dir.join("plan.yaml").to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let e = &home.status_json()["steps"][0]["last_error"];
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("before running any task"),
        "{e}"
    );
    // Ansible's own error line and where it points, never the caret under the line.
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("couldn't resolve module/action 'no.such.module_at_all'"),
        "{e}"
    );
    assert!(message.contains("broken.yaml, line 3"), "{e}");
    assert!(!message.contains('^'), "{e}");
    assert_eq!(e["task"], serde_json::Value::Null);
    assert!(e["exit_code"].as_i64().unwrap() > 0);
}

#[test]
fn ignore_errors_and_rescue_count_as_success() {
    let home = Home::new();
    let book = "- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"
  tasks:
    - name: Ignored failure
      ansible.builtin.fail: {msg: ignored}
      ignore_errors: true
    - block:
        - name: Rescued failure
          ansible.builtin.fail: {msg: rescued}
      rescue:
        - name: Rescue
          ansible.builtin.debug: {msg: recovered}
";
    let plan = playbook_plan(&home, "tolerant", book);
    let r = home.run(&["deploy", "--plan", plan.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(home.status_json()["deployment"]["status"], "completed");
}

#[test]
fn missing_ansible_is_a_clear_error_and_nothing_is_written() {
    let home = Home::new();
    let mut c = home.command(&["deploy"]);
    c.env(
        "THINKUBE_ANSIBLE_PLAYBOOK",
        home.outside("nope/ansible-playbook"),
    );
    Run::from(c.output().unwrap()).expect(
        1,
        &["THINKUBE_ANSIBLE_PLAYBOOK points to", "does not exist"],
    );
    let mut c = home.command(&["deploy"]);
    c.env_remove("THINKUBE_ANSIBLE_PLAYBOOK")
        .env("PATH", "/nonexistent");
    Run::from(c.output().unwrap()).expect(
        1,
        &["ansible-playbook is not installed", "thinkube-deploy setup"],
    );
    assert!(!home.state_file().exists());
}

/// A plan whose first step prints `child-started`, then waits until `go` exists.
fn blocking_plan(home: &Home) -> std::path::PathBuf {
    let dir = plan_dir(home, &[(
        "plan.yaml",
        "id: blocking
phases:
  - id: p
    steps:
      - id: wait
        command: [sh, -c, \"echo child-started; while [ ! -f go ]; do sleep 0.05; done; echo run >> count-wait\"]
      - id: after
        command: [sh, -c, \"echo run >> count-after\"]
",
    )]);
    dir.join("plan.yaml")
}

#[test]
fn a_second_deploy_while_one_runs_exits_3() {
    let home = Home::new();
    let plan = blocking_plan(&home);
    let (mut first, _lines) = start_blocked(&home, &plan);
    let r = home.run(&["deploy", "--plan", plan.to_str().unwrap()]);
    r.expect(
        3,
        &[
            &format!("locked by pid {}", first.id()),
            "operation `deploy`",
        ],
    );
    assert_eq!(home.status_json()["steps"][0]["status"], "running");
    std::fs::write(plan.parent().unwrap().join("go"), "").unwrap();
    assert_eq!(first.wait().unwrap().code(), Some(0));
}

#[test]
fn sigint_stops_the_step_records_it_interrupted_and_exits_130() {
    let home = Home::new();
    let plan = blocking_plan(&home);
    let (mut runner, _lines) = start_blocked(&home, &plan);
    thinkube_engine::state::lock::signal_process(runner.id(), 2); // SIGINT
    assert_eq!(runner.wait().unwrap().code(), Some(130));
    let v = home.status_json();
    assert_eq!(v["steps"][0]["status"], "interrupted");
    assert_eq!(v["deployment"]["status"], "interrupted");
    assert_eq!(v["current_run"]["outcome"], "interrupted");
    // The step's processes were stopped with it: it never finished.
    std::fs::write(plan.parent().unwrap().join("go"), "").unwrap();
    let r = home.run(&["resume"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(count_lines(&plan.parent().unwrap().join("count-wait")), 1);
    let outcomes = attempt_outcomes(&home, "wait");
    use thinkube_engine::state::model::AttemptOutcome::*;
    assert_eq!(outcomes, [Interrupted, Success]);
}

/// A SIGTERM before the run had set up its signal handling killed it (exit 143):
/// a deploy waiting for another's lock now stops at once, exit 130, nothing ran.
#[test]
fn sigterm_while_waiting_for_the_lock_stops_with_130_and_nothing_runs() {
    let home = Home::new();
    let plan = blocking_plan(&home);
    let (first, _lines) = start_blocked(&home, &plan);
    let mut first = KillOnDrop(first);
    let mut second = home
        .command(&["--lock-timeout", "600", "resume"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(second.stderr.take().unwrap()).lines();
    for line in stderr.by_ref() {
        if line.unwrap().contains("waiting for the lock held by") {
            break;
        }
    }
    thinkube_engine::state::lock::signal_process(second.id(), 15); // SIGTERM
    let status = wait_within(
        30,
        "a deploy told to stop while waiting for the lock",
        second,
    );
    assert_eq!(status.code(), Some(130));
    let rest: Vec<String> = stderr.map_while(|l| l.ok()).collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("stopped while waiting for the lock") && l.contains("nothing ran")),
        "{rest:?}"
    );
    assert_eq!(
        home.status_json()["steps"][0]["status"],
        "running",
        "the first run was disturbed"
    );
    std::fs::write(plan.parent().unwrap().join("go"), "").unwrap();
    assert_eq!(first.0.wait().unwrap().code(), Some(0));
    assert_eq!(count_lines(&plan.parent().unwrap().join("count-wait")), 1);
}

#[test]
fn cancel_from_another_process_stops_the_running_deployment() {
    let home = Home::new();
    let plan = blocking_plan(&home);
    let (mut runner, _lines) = start_blocked(&home, &plan);
    let r = home.run(&["cancel"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!("Asked pid {}", runner.id())),
        "{}",
        r.stdout
    );
    assert_eq!(runner.wait().unwrap().code(), Some(130));
    assert_eq!(home.status_json()["steps"][0]["status"], "interrupted");
    assert!(
        home.run(&["cancel"])
            .stdout
            .contains("No deployment is running")
    );
}

/// `cancel` while a command gate ran did not stop the run: the gate went on and
/// the phase's first step still ran. The gate's process is stopped, its verdict
/// is not recorded, and no step starts.
#[test]
fn cancel_during_a_command_gate_stops_the_run_before_any_step() {
    let home = Home::new();
    let dir = plan_dir(
        &home,
        &[(
            "plan.yaml",
            "id: gated\nphases:\n  - id: p\n    gates:\n      - command: [sh, -c, \"echo in > gate-entered; exec sleep 600\"]\n    steps:\n      - id: s\n        command: [sh, -c, \"echo run >> count-s\"]\n",
        )],
    );
    let entered = dir.join("gate-entered");
    let c = std::ffi::CString::new(entered.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let runner = home
        .command(&["deploy", "--plan", dir.join("plan.yaml").to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Opening the pipe returns once the gate's command has opened it to write.
    let mut line = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::open(&entered).unwrap(), &mut line).unwrap();
    assert_eq!(line, "in\n");
    let r = home.run(&["cancel"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let status = wait_within(60, "deploy after cancel during a gate", runner);
    assert_eq!(status.code(), Some(130));
    assert!(
        !dir.join("count-s").exists(),
        "the phase's step ran after cancel"
    );
    let v = home.status_json();
    assert_eq!(v["deployment"]["status"], "interrupted");
    assert_eq!(v["steps"][0]["status"], "pending");
    let events = home.run(&["events"]).stdout;
    assert!(!events.contains("gate command"), "{events}");
}

#[test]
fn sigkill_of_the_runner_mid_step_then_resume_finishes() {
    let home = Home::new();
    let plan = blocking_plan(&home);
    let (mut runner, _lines) = start_blocked(&home, &plan);
    runner.kill().unwrap(); // SIGKILL: no chance to record anything
    runner.wait().unwrap();
    // Its step's process gets SIGTERM from the kernel as the runner dies; until it
    // is gone the step is truly still running, after that it shows interrupted.
    let shown = home.status_json()["steps"][0]["status"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(shown == "interrupted" || shown == "running", "{shown}");
    std::fs::write(plan.parent().unwrap().join("go"), "").unwrap();
    let r = home.run(&["resume"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    use thinkube_engine::state::model::AttemptOutcome::*;
    assert_eq!(attempt_outcomes(&home, "wait"), [Interrupted, Success]);
    assert_eq!(count_lines(&plan.parent().unwrap().join("count-after")), 1);
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

fn counting_step(id: &str, file: &str) -> String {
    format!("      - id: {id}\n        command: [sh, -c, \"echo run >> {file}\"]\n")
}

#[test]
fn a_changed_plan_is_matched_step_by_step_and_nothing_is_silently_rerun_or_hidden() {
    let home = Home::new();
    let v1 = format!(
        "id: evolving\nphases:\n  - id: p\n    steps:\n{}{}{}",
        counting_step("a", "count-a"),
        counting_step("b", "count-b"),
        counting_step("c", "count-c")
    );
    let dir = plan_dir(&home, &[("plan.yaml", &v1)]);
    let plan = dir.join("plan.yaml");
    let plan = plan.to_str().unwrap();
    assert_eq!(home.run(&["deploy", "--plan", plan]).code, 0);
    // v2: a the same, b changed, c removed, d new.
    let v2 = format!(
        "id: evolving\nphases:\n  - id: p\n    steps:\n{}{}{}",
        counting_step("a", "count-a"),
        counting_step("b", "count-b2"),
        counting_step("d", "count-d")
    );
    std::fs::write(dir.join("plan.yaml"), v2).unwrap();
    let r = home.run(&["deploy", "--plan", plan]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for (file, runs) in [
        ("count-a", 1),
        ("count-b", 1),
        ("count-b2", 0),
        ("count-c", 1),
        ("count-d", 1),
    ] {
        assert_eq!(count_lines(&dir.join(file)), runs, "{file}");
    }
    let v = home.status_json();
    let ids: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b", "d"]);
    assert_eq!(v["steps"][1]["notice"], "changed since it ran");
    assert!(
        home.run(&["status"])
            .stdout
            .contains("[changed since it ran]")
    );
    let events = home.run(&["events"]).stdout;
    assert!(
        events.contains("changed since they ran")
            && events.contains("step `c` (c) is no longer in the plan; it was completed"),
        "{events}"
    );
    // Running it again on purpose clears the notice.
    assert_eq!(home.run(&["retry", "b"]).code, 0);
    assert_eq!(count_lines(&dir.join("count-b2")), 1);
    assert_eq!(
        home.status_json()["steps"][1]["notice"],
        serde_json::Value::Null
    );
    assert!(home.run(&["deploy"]).stdout.contains("already completed"));
    // Another plan is refused while this deployment exists.
    home.run(&["deploy", "--plan", "demo"])
        .expect(2, &["runs plan `evolving`, not `demo`", "clean-state"]);
}

/// A failed step removed from the plan disappeared: `resume` then exited 0 and the
/// deployment was `completed`. It stays in the record and the deployment failed;
/// every way on names it and says what to choose, until the user chooses.
#[test]
fn a_failed_step_removed_from_the_plan_stays_failed_and_is_named() {
    let home = Home::new();
    let with_b = |b: &str| {
        format!(
            "id: evolving\nphases:\n  - id: p\n    steps:\n{}      - id: b\n        title: Step bee\n        command: [{b}]\n{}",
            counting_step("a", "count-a"),
            counting_step("c", "count-c")
        )
    };
    let dir = plan_dir(&home, &[("plan.yaml", &with_b("\"false\""))]);
    let plan = dir.join("plan.yaml");
    let plan = plan.to_str().unwrap();
    assert_eq!(home.run(&["deploy", "--plan", plan]).code, 1);
    let without_b = format!(
        "id: evolving\nphases:\n  - id: p\n    steps:\n{}{}",
        counting_step("a", "count-a"),
        counting_step("c", "count-c")
    );
    std::fs::write(dir.join("plan.yaml"), without_b).unwrap();
    let before = std::fs::read(home.state_file()).unwrap();
    for args in [
        &["resume", "--plan", plan][..],
        &["deploy", "--plan", plan],
        &["retry", "--plan", plan],
    ] {
        home.run(args).expect(
            2,
            &[
                "step `b` (Step bee, failed after 1 attempt(s))",
                "never leaves the record",
                "thinkube-deploy clean-state",
            ],
        );
        assert_eq!(
            std::fs::read(home.state_file()).unwrap(),
            before,
            "{args:?}"
        );
    }
    let v = home.status_json();
    assert_eq!(v["deployment"]["status"], "failed");
    assert_eq!(v["steps"][1]["id"], "b");
    assert_eq!(v["steps"][1]["status"], "failed");
    assert_eq!(
        count_lines(&dir.join("count-c")),
        0,
        "c ran after a failed b"
    );
    // Put back (fixed), it is retried and the deployment finishes.
    std::fs::write(dir.join("plan.yaml"), with_b("\"true\"")).unwrap();
    let r = home.run(&["retry", "--plan", plan]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(home.status_json()["deployment"]["status"], "completed");
    assert_eq!(count_lines(&dir.join("count-a")), 1);
}

#[test]
fn flags_toggled_later_add_steps_and_never_hide_completed_ones() {
    let home = Home::new();
    let text = format!(
        "id: toggles\nflags:\n  - name: extra\n    default: false\nphases:\n  - id: p\n    steps:\n{}{}        when: extra\n",
        counting_step("base", "count-base"),
        counting_step("bonus", "count-bonus")
    );
    let dir = plan_dir(&home, &[("plan.yaml", &text)]);
    let plan = dir.join("plan.yaml");
    assert_eq!(
        home.run(&["deploy", "--plan", plan.to_str().unwrap()]).code,
        0
    );
    assert_eq!(
        home.status_json()["steps"][1]["skip_reason"],
        "flag extra is off"
    );
    let r = home.run(&["deploy", "--flag", "extra=true"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        (
            count_lines(&dir.join("count-base")),
            count_lines(&dir.join("count-bonus"))
        ),
        (1, 1)
    );
    let r = home.run(&["deploy", "--flag", "extra=false"]);
    assert!(r.stdout.contains("already completed"), "{}", r.stdout);
    let v = home.status_json();
    assert_eq!(v["steps"][1]["status"], "completed");
    assert_eq!(
        v["steps"][1]["notice"],
        "no longer enabled: flag extra is off"
    );
    assert_eq!(count_lines(&dir.join("count-bonus")), 1);
}

/// A flag's configuration (`flags[].config`) is checked only while a step behind the
/// flag is still to run: once they have all completed, a later `false` in the file
/// does not stop the rest of the deployment from being retried; while one is still
/// to run, it does (exit 2, nothing runs).
#[test]
fn a_flag_configuration_is_checked_only_while_its_steps_are_still_to_run() {
    let fails_once = "      - id: fails-once\n        command: [sh, -c, \"test -e fixed\"]\n";
    let flagged = |id: &str| format!("{}        when: extra\n", counting_step(id, "count-extra"));
    for (name, steps, refused) in [
        (
            "done before",
            format!("{}{fails_once}", flagged("bonus")),
            false,
        ),
        (
            "still to run",
            format!("{fails_once}{}", flagged("late-bonus")),
            true,
        ),
    ] {
        let home = Home::new();
        let text = format!(
            "id: configured\nflags:\n  - name: extra\n    default: true\n    config:\n      file: site.yaml\n      key: extra.enabled\nphases:\n  - id: p\n    steps:\n{steps}"
        );
        let dir = plan_dir(
            &home,
            &[
                ("plan.yaml", &text),
                ("site.yaml", "extra:\n  enabled: true\n"),
            ],
        );
        let r = home.run(&["deploy", "--plan", dir.join("plan.yaml").to_str().unwrap()]);
        assert_eq!(r.code, 1, "{name}: {}\n{}", r.stdout, r.stderr);
        let ran_before = count_lines(&dir.join("count-extra"));
        std::fs::write(dir.join("site.yaml"), "extra:\n  enabled: false\n").unwrap();
        std::fs::write(dir.join("fixed"), "").unwrap();
        let r = home.run(&["retry"]);
        if refused {
            r.expect(2, &["flag extra: ", "set `extra.enabled: true` there"]);
            let failed = steps_of(&home).into_iter().find(|s| s.0 == "fails-once");
            assert_eq!(
                failed.map(|s| (s.1, s.2)),
                Some(("failed".to_string(), 1)),
                "{name}"
            );
            assert_eq!(count_lines(&dir.join("count-extra")), 0, "{name}");
        } else {
            assert_eq!(r.code, 0, "{name}: {}\n{}", r.stdout, r.stderr);
            assert_eq!(home.status_json()["deployment"]["status"], "completed");
            assert_eq!(
                (ran_before, count_lines(&dir.join("count-extra"))),
                (1, 1),
                "{name}"
            );
        }
    }
}

fn run_env(home: &Home, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = home.command(args);
    for (k, v) in env {
        c.env(k, v);
    }
    Run::from(c.output().unwrap())
}

const GATED_PLAN: &str = "id: gated
vars:
  - name: port
  - name: iface
    default: lo
phases:
  - id: network
    gates:
      - tcp: {host: 127.0.0.1, port: 1, timeout_seconds: 2}
    steps:
      - id: s1
        command: [sh, -c, \"echo run >> count-1\"]
  - id: checked
    gates:
      - command: [test, -f, ready-cmd]
    steps:
      - id: s2
        command: [sh, -c, \"echo run >> count-2\"]
  - id: files
    gates:
      - file_exists: ready-file
    steps:
      - id: s3
        command: [sh, -c, \"echo run >> count-3\"]
  - id: link
    gates:
      - interface_up: \"${iface}\"
    steps:
      - id: s4
        command: [sh, -c, \"echo run >> count-4\"]
";

#[test]
fn each_gate_kind_blocks_with_exit_5_changing_no_step_and_passes_once_satisfied() {
    let home = Home::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    let closed = free_port();
    // A tcp gate's port is a number in the plan, so each case writes its own port in.
    let dir = plan_dir(&home, &[("plan.yaml", GATED_PLAN)]);
    let dir_plan = dir.join("plan.yaml");
    std::fs::write(
        &dir_plan,
        GATED_PLAN.replace("port: 1,", &format!("port: {closed},")),
    )
    .unwrap();
    let plan = dir_plan.to_str().unwrap();
    let r = home.run(&["deploy", "--plan", plan, "--var", "port=0"]);
    r.expect(
        5,
        &[
            &format!("gate tcp 127.0.0.1:{closed} blocked"),
            "No step was changed",
        ],
    );
    let before = steps_of(&home);
    assert!(
        before.iter().all(|(_, st, n)| st == "pending" && *n == 0),
        "{before:?}"
    );
    assert!(
        home.run(&["events"]).stdout.contains("blocked"),
        "a gate_checked event is recorded"
    );
    // The listener's port makes the gate pass (the plan file changes, so clean first).
    std::fs::write(
        &dir_plan,
        GATED_PLAN.replace("port: 1,", &format!("port: {open},")),
    )
    .unwrap();
    assert_eq!(home.run(&["clean-state", "--yes"]).code, 0);
    let r = home.run(&["deploy", "--plan", plan, "--var", "port=0"]);
    r.expect(
        5,
        &[
            "gate command test -f ready-cmd blocked",
            "exited with code 1",
        ],
    );
    assert_eq!(count_lines(&dir.join("count-1")), 1);
    std::fs::write(dir.join("ready-cmd"), "").unwrap();
    home.run(&["resume"]).expect(
        5,
        &["gate file_exists ready-file blocked", "does not exist"],
    );
    std::fs::write(dir.join("ready-file"), "").unwrap();
    let r = home.run(&["resume"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for n in 1..=4 {
        assert_eq!(count_lines(&dir.join(format!("count-{n}"))), 1, "step s{n}");
    }
    drop(listener);
}

#[test]
fn a_missing_network_interface_blocks() {
    let home = Home::new();
    let dir = plan_dir(
        &home,
        &[(
            "plan.yaml",
            "vars:\n  - name: iface\nphases:\n  - id: link\n    gates:\n      - interface_up: \"${iface}\"\n    steps:\n      - id: s\n        command: [\"true\"]\n",
        )],
    );
    let plan = dir.join("plan.yaml");
    home.run(&[
        "deploy",
        "--plan",
        plan.to_str().unwrap(),
        "--var",
        "iface=nosuchif0",
    ])
    .expect(
        5,
        &[
            "gate interface_up nosuchif0 blocked",
            "no network interface nosuchif0",
        ],
    );
    assert_eq!(home.status_json()["steps"][0]["attempts"], 0);
}

#[test]
fn vm_running_blocks_without_cached_facts() {
    let home = Home::new();
    let dir = plan_dir(
        &home,
        &[(
            "plan.yaml",
            "phases:\n  - id: vms\n    gates:\n      - vm_running: {vms: [k0s-controller]}\n    steps:\n      - id: s\n        command: [\"true\"]\n",
        )],
    );
    home.run(&["deploy", "--plan", dir.join("plan.yaml").to_str().unwrap()])
        .expect(
            5,
            &[
                "vm_running k0s-controller",
                "no power state of VM k0s-controller is cached",
            ],
        );
}

#[test]
fn requires_restart_waits_for_a_new_boot_id() {
    let home = Home::new();
    let dir = plan_dir(
        &home,
        &[(
            "plan.yaml",
            "phases:\n  - id: p\n    steps:\n      - id: kernel\n        command: [sh, -c, \"echo run >> count-kernel\"]\n        requires_restart: true\n      - id: after\n        command: [sh, -c, \"echo run >> count-after\"]\n",
        )],
    );
    let plan = dir.join("plan.yaml");
    let r = run_env(
        &home,
        &["deploy", "--plan", plan.to_str().unwrap()],
        &[("THINKUBE_BOOT_ID", "boot-a")],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("Restart this machine"), "{}", r.stdout);
    assert_eq!(
        home.status_json()["deployment"]["status"],
        "awaiting_restart"
    );
    assert_eq!(count_lines(&dir.join("count-after")), 0);
    run_env(&home, &["deploy"], &[("THINKUBE_BOOT_ID", "boot-a")])
        .expect(1, &["has not restarted since step `kernel`"]);
    let r = run_env(&home, &["deploy"], &[("THINKUBE_BOOT_ID", "boot-b")]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(home.status_json()["deployment"]["status"], "completed");
    assert_eq!(
        (
            count_lines(&dir.join("count-kernel")),
            count_lines(&dir.join("count-after"))
        ),
        (1, 1)
    );
}

#[test]
fn an_unreachable_host_and_a_failing_loop_item_are_named() {
    let home = Home::new();
    let book = "- hosts: all
  gather_facts: false
  tasks:
    - name: Reach the host
      ansible.builtin.ping:
";
    let inventory = "all:\n  hosts:\n    gone:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n      ansible_user: nobody\n      ansible_connection: ssh\n";
    let dir = plan_dir(
        &home,
        &[
            (
                "plan.yaml",
                "phases:\n  - id: p\n    steps:\n      - id: reach\n        playbook: reach.yaml\n",
            ),
            ("reach.yaml", book),
            ("inventory.yaml", inventory),
        ],
    );
    let (plan, inventory) = (dir.join("plan.yaml"), dir.join("inventory.yaml"));
    let deploy = [
        "deploy",
        "--plan",
        plan.to_str().unwrap(),
        "--inventory",
        inventory.to_str().unwrap(),
    ];
    // The pre-flight finds it first: nothing runs.
    home.run(&deploy).expect(
        2,
        &[
            "1 host is not ready, so nothing ran",
            "gone (127.0.0.1:1): does not answer",
            "--skip-checks",
        ],
    );
    assert_eq!(home.status_json()["deployment"]["status"], "not_started");
    // Without it, the step finds it, and names it.
    let r = home.run(&[&deploy[..], &["--skip-checks"]].concat());
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let e = &home.status_json()["steps"][0]["last_error"];
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("host gone unreachable"),
        "{e}"
    );
    assert_eq!(e["host"], "gone");
    assert_eq!(e["task"], "Reach the host");

    let other = Home::new();
    let looped = "- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"
  tasks:
    - name: Check each item
      ansible.builtin.command: \"test {{ item }} -ne 2\"
      loop: [1, 2, 3]
";
    let plan = playbook_plan(&other, "items", looped);
    let r = other.run(&["deploy", "--plan", plan.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let e = &other.status_json()["steps"][0]["last_error"];
    assert_eq!(e["task"], "Check each item");
    assert_eq!(e["host"], "localhost");
}

#[test]
fn json_progress_streams_one_event_per_line() {
    let home = Home::new();
    let dir = plan_dir(
        &home,
        &[(
            "plan.yaml",
            &format!(
                "phases:\n  - id: p\n    steps:\n{}",
                counting_step("one", "count-one")
            ),
        )],
    );
    let r = home.run(&[
        "deploy",
        "--plan",
        dir.join("plan.yaml").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let types: Vec<String> = r
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(types.first().map(String::as_str), Some("run_started"));
    assert!(
        types.contains(&"step_started".to_string()) && types.contains(&"step_finished".to_string()),
        "{types:?}"
    );
    assert_eq!(types.last().map(String::as_str), Some("run_finished"));
}

#[test]
fn vm_running_passes_when_the_cached_facts_say_so() {
    use thinkube_engine::state::lock::LockWait;
    use thinkube_engine::state::model::{FactSource, InfraFact};
    let home = Home::new();
    let store = home.store();
    let now = thinkube_engine::timestamp::Timestamp::now();
    let mut w = store.open_writer("t", LockWait::NoWait, now).unwrap();
    w.commit(now, vec![], |s| {
        s.facts.infrastructure.push(InfraFact {
            key: "vm/k0s-controller".into(),
            source: FactSource::Azure,
            value: serde_json::json!({"power_state": "running"}),
            fetched_at: now,
            ttl_seconds: 300,
            checksum: None,
        });
        Ok(())
    })
    .unwrap();
    w.finish().unwrap();
    let dir = plan_dir(
        &home,
        &[(
            "plan.yaml",
            "phases:\n  - id: vms\n    gates:\n      - vm_running: {vms: [k0s-controller]}\n    steps:\n      - id: s\n        command: [\"true\"]\n",
        )],
    );
    let r = home.run(&["deploy", "--plan", dir.join("plan.yaml").to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        home.run(&["events"])
            .stdout
            .contains("gate vm_running k0s-controller passed")
    );
}

/// A secret-named variable's plan default silently replaced, on `retry`, the value
/// given at `deploy`. It is asked for again; the default never stands in for it.
#[test]
fn a_secret_given_at_deploy_is_never_replaced_by_the_plans_default_on_retry() {
    let home = Home::new();
    let text = "id: secret-default
vars:
  - name: db_pass
    default: plan-default-5e1d
phases:
  - id: p
    steps:
      - id: uses-it
        command: [sh, -c, \"test \\\"$PW\\\" != plan-default-5e1d && echo ok >> used\"]
        env: {PW: \"${db_pass}\"}
      - id: later
        command: [sh, -c, \"test -f ready && test \\\"$PW\\\" != plan-default-5e1d\"]
        env: {PW: \"${db_pass}\"}
";
    let dir = plan_dir(&home, &[("plan.yaml", text)]);
    let plan = dir.join("plan.yaml");
    let given = "db_pass=Given-91c2-never-stored";
    let r = home.run(&["deploy", "--plan", plan.to_str().unwrap(), "--var", given]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(count_lines(&dir.join("used")), 1);
    std::fs::write(dir.join("ready"), "").unwrap();
    let before = std::fs::read(home.state_file()).unwrap();
    for args in [&["retry"][..], &["retry", "uses-it", "later"], &["resume"]] {
        home.run(args).expect(
            2,
            &[
                "variable `db_pass` looks secret",
                "--var db_pass=VALUE",
                "Nothing ran",
            ],
        );
        assert_eq!(
            std::fs::read(home.state_file()).unwrap(),
            before,
            "{args:?}"
        );
    }
    let r = home.run(&["retry", "--var", given]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(home.status_json()["deployment"]["status"], "completed");
    // A completed deployment needs nothing: `deploy` says so without asking.
    assert!(home.run(&["deploy"]).stdout.contains("already completed"));
}

#[test]
fn secrets_given_as_variables_are_never_written_and_asked_for_again() {
    let home = Home::new();
    let text = "id: secretive
vars:
  - name: admin_password
  - name: azure_client_secret
phases:
  - id: p
    steps:
      - id: use-them
        command: [sh, -c, \"test -n \\\"$PW\\\" && test -n \\\"$CS\\\" && echo used >> used\"]
        env: {PW: \"${admin_password}\", CS: \"${azure_client_secret}\"}
      - id: later
        command: [sh, -c, \"test -f ready && test -n \\\"$PW\\\"\"]
        env: {PW: \"${admin_password}\"}
";
    let dir = plan_dir(&home, &[("plan.yaml", text)]);
    let plan = dir.join("plan.yaml");
    let (pw, cs) = ("Pw-3c9f1e-never-stored", "Cs-77aa02-never-stored");
    let r = home.run(&[
        "deploy",
        "--plan",
        plan.to_str().unwrap(),
        "--var",
        &format!("admin_password={pw}"),
        "--var",
        &format!("azure_client_secret={cs}"),
    ]);
    assert_eq!(
        r.code, 1,
        "the second step fails until `ready` exists: {}\n{}",
        r.stdout, r.stderr
    );
    assert_eq!(count_lines(&dir.join("used")), 1);
    for file in crate::migration::walk(home.path()) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        assert!(
            !text.contains(pw) && !text.contains(cs),
            "a secret is in {}",
            file.display()
        );
    }
    // A later run has no copy of the secret: it must be given again.
    std::fs::write(dir.join("ready"), "").unwrap();
    home.run(&["retry"])
        .expect(2, &["has no value: set it with --var"]);
    let r = home.run(&[
        "retry",
        "--var",
        &format!("admin_password={pw}"),
        "--var",
        &format!("azure_client_secret={cs}"),
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for file in crate::migration::walk(home.path()) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        assert!(
            !text.contains(pw) && !text.contains(cs),
            "a secret is in {}",
            file.display()
        );
    }
}

/// A step that prints a secret (a playbook's `debug`, a script's `echo`) does not
/// carry it into the log, the failure kept in the state, the events or the terminal:
/// the runner hides every secret-looking value before anything is written or shown.
#[test]
fn secrets_a_step_prints_are_hidden_in_logs_state_events_and_output() {
    let home = Home::new();
    let (pw, cs, quoted) = (
        "Pw-5e1b77-printed",
        "Cs-0d93aa-inherited",
        r#"Tk"9f\2-quoted"#,
    );
    let playbook = r#"- hosts: localhost
  gather_facts: false
  tasks:
    - name: Show the password
      ansible.builtin.debug:
        msg: "the password is {{ db_password }} and the token is {{ api_token }}"
    - name: Fail with it
      ansible.builtin.fail:
        msg: "login refused for {{ db_password }}"
"#;
    let text = "id: leaky
vars:
  - name: admin_password
  - name: api_token
phases:
  - id: p
    steps:
      - id: echo-them
        command: [sh, -c, \"printf 'pw=%s cs=%s\\\\n' \\\"$PW\\\" \\\"$AZURE_CLIENT_SECRET\\\"; printf 'tok=%s\\\\n' \\\"$TOK\\\" >&2\"]
        env: {PW: \"${admin_password}\", TOK: \"${api_token}\"}
      - id: debug-them
        playbook: show.yml
        vars: {db_password: \"${admin_password}\", api_token: \"${api_token}\"}
";
    let dir = plan_dir(&home, &[("plan.yaml", text), ("show.yml", playbook)]);
    let mut c = home.command(&[
        "deploy",
        "--plan",
        dir.join("plan.yaml").to_str().unwrap(),
        "--var",
        &format!("admin_password={pw}"),
        "--var",
        &format!("api_token={quoted}"),
    ]);
    c.env("AZURE_CLIENT_SECRET", cs);
    let r = crate::common::Run::from(c.output().unwrap());
    assert_eq!(r.code, 1, "the playbook fails: {}\n{}", r.stdout, r.stderr);

    // The failure is kept, with the secret hidden in its message and output.
    let v = home.status_json();
    let failed = &v["steps"][1];
    assert_eq!(failed["status"], "failed");
    assert_eq!(
        failed["last_error"]["message"],
        "login refused for ********"
    );
    let tail = failed["last_error"]["output_tail"].to_string();
    assert!(
        tail.contains("the password is ******** and the token is ********"),
        "{tail}"
    );

    // The command step's log says what it printed, hidden.
    let logs: Vec<_> = crate::migration::walk(home.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    let all_logs: String = logs
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for shown in ["pw=********", "cs=********", "tok=********"] {
        assert!(
            all_logs.contains(shown),
            "{shown} not in the logs:\n{all_logs}"
        );
    }

    // Nowhere: not in a file under the home, not on the terminal.
    let json_quoted = serde_json::to_string(quoted).unwrap();
    let json_quoted = &json_quoted[1..json_quoted.len() - 1];
    for file in crate::migration::walk(home.path()) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        for secret in [pw, cs, quoted, json_quoted] {
            assert!(!text.contains(secret), "{secret} is in {}", file.display());
        }
    }
    for secret in [pw, cs, quoted] {
        assert!(
            !r.stdout.contains(secret) && !r.stderr.contains(secret),
            "{secret} reached the terminal"
        );
    }
}

/// A command gate given a secret variable, that fails saying it: the gate's name and
/// reason are kept and shown with the secret hidden.
#[test]
fn a_blocked_gate_does_not_carry_a_secret_into_the_state_or_the_terminal() {
    let home = Home::new();
    let pw = "Pw-81c4d0-gate";
    let text = "id: gated-secret
vars:
  - name: admin_password
phases:
  - id: p
    gates:
      - command: [sh, -c, \"echo login refused for $0 >&2; exit 1\", \"${admin_password}\"]
    steps:
      - id: s
        command: [\"true\"]
";
    let dir = plan_dir(&home, &[("plan.yaml", text)]);
    let r = home.run(&[
        "deploy",
        "--plan",
        dir.join("plan.yaml").to_str().unwrap(),
        "--var",
        &format!("admin_password={pw}"),
    ]);
    r.expect(5, &["login refused for ********"]);
    assert!(!r.stdout.contains(pw) && !r.stderr.contains(pw));
    for file in crate::migration::walk(home.path()) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        assert!(!text.contains(pw), "the secret is in {}", file.display());
    }
    assert!(
        home.run(&["events"])
            .stdout
            .contains("login refused for ********")
    );
}

#[test]
fn setup_installs_the_pinned_ansible_privately_once() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    let r = home.run(&["setup"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let playbook = home.path().join("venv/bin/ansible-playbook");
    let out = std::process::Command::new(&playbook)
        .arg("--version")
        .output()
        .unwrap();
    let pin = thinkube_engine::run::setup::ANSIBLE_CORE.trim_start_matches("ansible-core==");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("[core {pin}]")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The collections thinkube's playbooks use came with the `ansible` package.
    let collections: Vec<_> = std::fs::read_dir(home.path().join("venv/lib"))
        .unwrap()
        .map(|e| e.unwrap().path().join("site-packages/ansible_collections"))
        .collect();
    for c in ["kubernetes/core", "community/general", "ansible/posix"] {
        assert!(
            collections.iter().any(|d| d.join(c).is_dir()),
            "{c} in {collections:?}"
        );
    }
    for path in crate::migration::walk(home.path()) {
        let meta = path.symlink_metadata().unwrap();
        if !meta.file_type().is_symlink() {
            assert_eq!(
                meta.permissions().mode() & 0o077,
                0,
                "{} is {:o}",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
    assert!(home.run(&["setup"]).stdout.contains("Already installed"));
    // The runner finds it there with nothing else configured.
    let dir = plan_dir(
        &home,
        &[
            (
                "plan.yaml",
                "phases:\n  - id: p\n    steps:\n      - id: s\n        playbook: b.yaml\n",
            ),
            (
                "b.yaml",
                "- hosts: localhost\n  connection: local\n  gather_facts: false\n  vars:\n    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"\n  tasks:\n    - ansible.builtin.debug: {msg: hi}\n",
            ),
        ],
    );
    let mut c = home.command(&["deploy", "--plan", dir.join("plan.yaml").to_str().unwrap()]);
    c.env_remove("THINKUBE_ANSIBLE_PLAYBOOK")
        .env("PATH", "/usr/bin:/bin");
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}

/// A demo deploy onto a port another process already listens on (a demo server left
/// by another installer home, say) stops at the start step and names the holder and
/// the way out, instead of failing later with "another page than the one deployed".
#[test]
fn demo_deploy_on_a_taken_port_names_what_holds_it_and_demo_port() {
    let home = Home::new();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let run = home.run(&["deploy", "--var", &format!("demo_port={port}")]);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(run.code, 1, "{said}");
    let who = format!(
        "port {port} on 127.0.0.1 is already in use by pid {}",
        std::process::id()
    );
    assert!(said.contains(&who) && said.contains("demo_port"), "{said}");
    let status = home.status_json();
    let steps = status["steps"].as_array().unwrap();
    let of = |id: &str| steps.iter().find(|s| s["id"] == id).unwrap()["status"].clone();
    assert_eq!(
        (of("start-server"), of("check-http")),
        ("failed".into(), "pending".into())
    );
    drop(holder);
}

/// `deploy --inventory FILE` then `retry` ran against `<home>/inventory.yaml` (or
/// `localhost,`), and `--plan RELATIVE` was kept relative to the folder `deploy`
/// ran in. The deployment now owns both: `retry` from another folder runs the same
/// plan against the same inventory, and an inventory changed since is refused until
/// it is given again on purpose.
#[test]
fn retry_runs_the_deployments_own_plan_and_inventory_from_any_folder() {
    let home = Home::new();
    let book = "- hosts: all\n  gather_facts: false\n  vars:\n    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"\n  tasks:\n    - ansible.builtin.shell: \"echo {{ inventory_hostname }} >> seen; test -f ready\"\n      args:\n        chdir: \"{{ playbook_dir }}\"\n";
    let dir = plan_dir(
        &home,
        &[
            (
                "plan.yaml",
                "id: own\nphases:\n  - id: p\n    steps:\n      - id: s\n        playbook: book.yaml\n",
            ),
            ("book.yaml", book),
        ],
    );
    let alpha = "all:\n  hosts:\n    alpha:\n      ansible_connection: local\n  vars:\n    db_password: hunter2-copy\n";
    let inventory = home.outside("alpha.yaml");
    std::fs::write(&inventory, alpha).unwrap();
    let root = dir.parent().unwrap();
    let relative = dir.strip_prefix(root).unwrap().join("plan.yaml");
    let r = Run::from(
        home.command(&[
            "deploy",
            "--plan",
            relative.to_str().unwrap(),
            "--inventory",
            "alpha.yaml",
        ])
        .current_dir(root)
        .output()
        .unwrap(),
    );
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    // The deployment keeps what its inventory held, secrets masked.
    let copy = std::fs::read_to_string(home.layout().deployment_inventory_file()).unwrap();
    assert!(
        copy.contains("alpha") && !copy.contains("hunter2-copy"),
        "{copy}"
    );
    // The wizard's inventory, which retry used to take instead.
    home.create();
    std::fs::write(
        home.layout().inventory_file(),
        "all:\n  hosts:\n    wrong:\n      ansible_connection: local\n",
    )
    .unwrap();
    std::fs::write(dir.join("ready"), "").unwrap();
    let elsewhere = home.outside("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let in_elsewhere =
        |args: &[&str]| Run::from(home.command(args).current_dir(&elsewhere).output().unwrap());
    let r = in_elsewhere(&["retry"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("seen")).unwrap(),
        "alpha\nalpha\n"
    );
    // Changed since: refused, saying what changed, until given again on purpose.
    let more_hosts = alpha.replace(
        "  vars:",
        "    beta:\n      ansible_connection: local\n      ansible_host: 127.0.0.2\n  vars:",
    );
    std::fs::write(&inventory, more_hosts).unwrap();
    in_elsewhere(&["retry", "s"]).expect(
        2,
        &[
            "alpha.yaml changed since this deployment started",
            "beta (127.0.0.2:22) added",
            "--inventory",
        ],
    );
    std::fs::write(&inventory, format!("{alpha}    extra: 1\n")).unwrap();
    in_elsewhere(&["retry", "s"]).expect(
        2,
        &[
            "alpha.yaml changed since this deployment started",
            "its hosts are the same and log in as before; variables or groups changed",
            "--inventory",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("seen")).unwrap(),
        "alpha\nalpha\n"
    );
    let r = in_elsewhere(&["retry", "s", "--inventory", inventory.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("seen")).unwrap(),
        "alpha\nalpha\nalpha\n"
    );
    let v = home.status_json();
    assert_eq!(v["deployment"]["status"], "completed");
}

/// `sshpass`, which Ansible needs for password logins, was checked by nothing: the
/// first step failed. An inventory that logs in to an SSH host with a password is
/// now refused up front when `sshpass` is not on PATH (exit 1, nothing written, the
/// host not even contacted). The run with `sshpass` is in `ssh.rs`, against a real
/// sshd.
#[test]
fn a_password_login_without_sshpass_is_refused_before_anything_runs() {
    let home = Home::new();
    let dir = plan_dir(
        &home,
        &[
            (
                "plan.yaml",
                "id: pw\nphases:\n  - id: p\n    steps:\n      - id: s\n        playbook: book.yaml\n",
            ),
            ("book.yaml", "- hosts: all\n  tasks: []\n"),
        ],
    );
    let inventory = home.outside("inventory.yaml");
    std::fs::write(
        &inventory,
        format!(
            "all:\n  vars:\n    ansible_password: \"{{{{ lookup('env', 'NOT_SET') }}}}\"\n  hosts:\n    srv:\n      ansible_host: 127.0.0.1\n      ansible_port: {}\n",
            free_port()
        ),
    )
    .unwrap();
    let plan = dir.join("plan.yaml");
    let args = [
        "deploy",
        "--plan",
        plan.to_str().unwrap(),
        "--inventory",
        inventory.to_str().unwrap(),
    ];
    let empty = home.outside("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let r = Run::from(home.command(&args).env("PATH", &empty).output().unwrap());
    r.expect(
        1,
        &[
            "logs in to its hosts with a password",
            "`sshpass` is not installed",
            "Nothing ran",
        ],
    );
    assert!(
        !home.state_file().exists(),
        "a refused deploy wrote a state"
    );
}

/// A plan file changed since the deployment last ran it was taken by `retry` and
/// `resume` without a word. It is now refused (exit 2, both digests, the way to see
/// it and to accept it) until given with `--plan`; then what changed is matched.
#[test]
fn a_plan_changed_since_the_last_run_needs_plan_to_be_taken() {
    let home = Home::new();
    let v1 = format!(
        "id: evolving\nphases:\n  - id: p\n    steps:\n{}      - id: b\n        command: [sh, -c, \"test -f ready\"]\n",
        counting_step("a", "count-a")
    );
    let dir = plan_dir(&home, &[("plan.yaml", &v1)]);
    let plan = dir.join("plan.yaml");
    let plan = plan.to_str().unwrap();
    assert_eq!(home.run(&["deploy", "--plan", plan]).code, 1);
    std::fs::write(
        dir.join("plan.yaml"),
        format!("{v1}{}", counting_step("c", "count-c")),
    )
    .unwrap();
    std::fs::write(dir.join("ready"), "").unwrap();
    let before = std::fs::read(home.state_file()).unwrap();
    for args in [&["retry"][..], &["resume"], &["deploy"]] {
        home.run(args).expect(
            2,
            &[
                "plan.yaml changed since this deployment last ran it",
                "--plan",
                "Nothing ran",
            ],
        );
        assert_eq!(
            std::fs::read(home.state_file()).unwrap(),
            before,
            "{args:?}"
        );
    }
    let r = home.run(&["retry", "--plan", plan]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(count_lines(&dir.join("count-c")), 1);
    assert_eq!(count_lines(&dir.join("count-a")), 1);
}

/// A step retried within one run: each attempt is kept, but only the latest keeps its
/// output tail (the state holds one tail a step, however many times it ran).
#[test]
fn only_a_steps_latest_attempt_keeps_its_output_tail() {
    let home = Home::new();
    let text = "id: flaky\nphases:\n  - id: p\n    steps:\n      - id: a\n        command: [sh, -c, \"echo once-more; exit 1\"]\n        retries: 2\n        retry_delay_seconds: 0\n      - id: b\n        command: [sh, -c, \"echo only-once; exit 1\"]\n";
    let dir = plan_dir(&home, &[("plan.yaml", text)]);
    home.run(&["deploy", "--plan", dir.join("plan.yaml").to_str().unwrap()])
        .expect(1, &[]);
    let rows: serde_json::Value =
        serde_json::from_str(&home.run(&["history", "--json"]).stdout).unwrap();
    let run_id = rows[0]["run_id"].as_str().unwrap().to_string();
    let run: serde_json::Value =
        serde_json::from_str(&home.run(&["show-run", &run_id, "--json"]).stdout).unwrap();
    let tails: Vec<(String, u64, usize)> = run["steps_attempted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let tail = a["error"]["output_tail"].as_array().map_or(0, Vec::len);
            (
                a["step"].as_str().unwrap().to_string(),
                a["attempt"].as_u64().unwrap(),
                tail,
            )
        })
        .collect();
    assert_eq!(
        tails,
        [("a".into(), 1, 0), ("a".into(), 2, 0), ("a".into(), 3, 1)],
        "{run:#}"
    );
    let tail = home.status_json()["steps"][0]["last_error"]["output_tail"].to_string();
    assert!(tail.contains("once-more"), "{tail}");
}
