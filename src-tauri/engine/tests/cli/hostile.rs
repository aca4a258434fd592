//! Steps that behave badly on purpose: enormous output, output without newlines,
//! daemons that keep the step's pipes open, pipes closed early, secrets in other
//! encodings. Each test is named after the promise a hostile step once broke.

use std::process::Stdio;

use crate::common::*;

fn one_step_plan(home: &Home, script: &str) -> std::path::PathBuf {
    let text = format!(
        "id: hostile\nphases:\n  - id: p\n    steps:\n      - id: s\n        command: [sh, -c, {}]\n",
        serde_json::to_string(script).unwrap()
    );
    plan_dir(home, &[("plan.yaml", &text)]).join("plan.yaml")
}

fn files_under(home: &Home, ext: &str) -> Vec<std::path::PathBuf> {
    crate::migration::walk(home.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect()
}

/// The bytes of the log of step `s`'s first attempt.
fn first_attempt_log(home: &Home) -> Vec<u8> {
    let log = files_under(home, "log")
        .into_iter()
        .find(|p| p.to_string_lossy().contains("/s-1.log"))
        .expect("the attempt's log");
    std::fs::read(log).unwrap()
}

/// A 17 MB line once made the state 68 MB (stored four times) and the backup
/// 85 MB, over the read limit: status, retry, clean-state and recover all refused.
#[test]
fn one_huge_output_line_keeps_the_state_small_and_every_command_working() {
    let home = Home::new();
    let plan = one_step_plan(
        &home,
        "head -c 17000000 /dev/zero | tr '\\0' x; echo; echo second line; exit 3",
    );
    let mut c = home.command(&["deploy", "--plan", plan.to_str().unwrap()]);
    let out = c
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(out.code(), Some(1));
    for file in [
        home.state_file(),
        home.path().join("deployment-state.json.bak"),
    ] {
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(size < 256 * 1024, "{} is {size} bytes", file.display());
    }
    let v = home.status_json();
    assert_eq!(v["steps"][0]["status"], "failed");
    let error = &v["steps"][0]["last_error"];
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("the command exited with code 3: second line"),
        "{error}"
    );
    let tail: Vec<&str> = error["output_tail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(tail.len(), 2, "{tail:?}");
    assert!(tail[0].starts_with("xxxx") && tail[0].contains("more bytes in the step's log"));
    assert!(tail[0].len() < 2048);
    // The whole line is in the log, byte for byte.
    let text = first_attempt_log(&home);
    assert_eq!(text.iter().filter(|&&b| b == b'x').count(), 17_000_000);
    assert!(text.ends_with(b"second line\n"));
    // Every command still reads the state.
    let events = home.path().join("events.jsonl");
    assert!(std::fs::metadata(&events).unwrap().len() < 256 * 1024);
    let history = home.run(&["history"]);
    assert_eq!(history.code, 0, "{}", history.stderr);
    assert!(history.stdout.contains("failed"), "{}", history.stdout);
    // The backup, taken while the huge line was being handled, is as usable.
    std::fs::write(home.state_file(), b"{ torn").unwrap();
    let backup = home.run(&["recover", "--from-backup"]);
    assert_eq!(backup.code, 0, "{}\n{}", backup.stdout, backup.stderr);
    assert_eq!(home.status_json()["steps"][0]["status"], "failed");
    home.run(&["clean-state", "--yes"]).expect(0, &[]);
}

/// A step printing 1.2 GB without a newline once made the runner allocate ~3.8 GB
/// and abort. The runner reads in bounded chunks: its peak memory (VmHWM, read by
/// the next step from /proc/<runner>/status) stays far below the output's size.
#[test]
fn output_without_newlines_is_read_in_bounded_memory() {
    let home = Home::new();
    let text = "id: flood\nphases:\n  - id: p\n    steps:\n      - id: flood\n        command: [sh, -c, \"head -c 200000000 /dev/zero | tr '\\\\0' y\"]\n      - id: measure\n        command: [sh, -c, \"grep VmHWM /proc/$PPID/status > hwm.txt\"]\n";
    let dir = plan_dir(&home, &[("plan.yaml", text)]);
    let status = home
        .command(&["deploy", "--plan", dir.join("plan.yaml").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let hwm = std::fs::read_to_string(dir.join("hwm.txt")).unwrap();
    let kb: u64 = hwm
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("VmHWM line: {hwm}"));
    assert!(
        kb < 96 * 1024,
        "the runner's peak memory was {kb} kB for 200 MB of output"
    );
    let log = files_under(&home, "log")
        .into_iter()
        .find(|p| p.to_string_lossy().contains("/flood-1.log"))
        .unwrap();
    assert_eq!(std::fs::metadata(&log).unwrap().len(), 200_000_001);
}

/// A step that leaves a daemon holding its output (`setsid sleep &`) once hung the
/// deployment until the daemon died, ignoring signals meanwhile. The runner stops
/// reading soon after the step's own process ended, and says what it left running.
#[test]
fn a_daemon_holding_the_steps_output_does_not_hang_the_deployment() {
    let home = Home::new();
    let plan = one_step_plan(&home, "setsid sleep 300 & echo started");
    let r = home.run(&["deploy", "--plan", plan.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let note = r
        .stdout
        .lines()
        .find(|l| l.contains("still hold its output"))
        .unwrap_or_else(|| panic!("no note of what was left running:\n{}", r.stdout))
        .to_string();
    let pid: i32 = note
        .split("pid ")
        .nth(1)
        .and_then(|p| p.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {note}"));
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    // SAFETY: kill(2) of the daemon this test's step started.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    assert_eq!(comm.trim(), "sleep", "{note}");
    assert!(note.contains("(sleep)"), "{note}");
    // The note is part of the record too.
    let events = std::fs::read_to_string(home.path().join("events.jsonl")).unwrap();
    assert!(
        events.contains("\"step_note\"") && events.contains("still hold its output"),
        "{events}"
    );
    assert_eq!(home.status_json()["deployment"]["status"], "completed");
}

/// A step that closed its output and goes on running once made the runner wait for
/// it deaf to signals. SIGTERM still stops it: the step is interrupted, exit 130.
#[test]
fn a_step_that_closed_its_output_still_stops_on_sigterm() {
    let home = Home::new();
    let plan = one_step_plan(
        &home,
        "echo child-started; exec >/dev/null 2>&1; sleep 300; echo ran > ran.txt",
    );
    let (mut child, _lines) = start_blocked(&home, &plan);
    // The step's output is closed once `sleep` runs; until then the runner may still
    // read. Either way a SIGTERM must end the run.
    // SAFETY: kill(2) of the deploy process this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let v = home.status_json();
    assert_eq!(v["steps"][0]["status"], "interrupted");
    assert!(!plan.parent().unwrap().join("ran.txt").exists());
}

/// Ansible's JSON writes a non-ASCII password as `P\u00e4ssw\u00f6rd`: that form
/// once passed the mask, and the decoded text was stored. Each line of a multi-line
/// secret (a private key) was never masked at all.
#[test]
fn non_ascii_and_multi_line_secrets_are_hidden_in_every_form() {
    let home = Home::new();
    let pw = "Pässwörd-7c1e";
    let key_line = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmU";
    let key = format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{key_line}\n-----END OPENSSH PRIVATE KEY-----\n"
    );
    let playbook = r#"- hosts: localhost
  gather_facts: false
  tasks:
    - name: Show them
      ansible.builtin.debug:
        msg: "pw {{ db_password }}"
    - name: Fail with the key
      ansible.builtin.fail:
        msg: "{{ ssh_private_key }}"
"#;
    let text = "id: leaky
vars:
  - name: admin_password
  - name: deploy_private_key
phases:
  - id: p
    steps:
      - id: echo-key
        command: [sh, -c, \"printf '%s\\\\n' \\\"$KEY\\\"\"]
        env: {KEY: \"${deploy_private_key}\"}
      - id: debug-them
        playbook: show.yml
        vars: {db_password: \"${admin_password}\", ssh_private_key: \"${deploy_private_key}\"}
";
    let dir = plan_dir(&home, &[("plan.yaml", text), ("show.yml", playbook)]);
    let r = home.run(&[
        "deploy",
        "--plan",
        dir.join("plan.yaml").to_str().unwrap(),
        "--var",
        &format!("admin_password={pw}"),
        "--var",
        &format!("deploy_private_key={key}"),
    ]);
    assert_eq!(r.code, 1, "the playbook fails: {}\n{}", r.stdout, r.stderr);
    let escaped = "P\\u00e4ssw\\u00f6rd-7c1e";
    for file in crate::migration::walk(home.path()) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        for secret in [pw, escaped, key_line] {
            assert!(!text.contains(secret), "{secret} is in {}", file.display());
        }
    }
    for secret in [pw, escaped, key_line] {
        assert!(
            !r.stdout.contains(secret) && !r.stderr.contains(secret),
            "{secret} reached the terminal"
        );
    }
    let tail = home.status_json()["steps"][1]["last_error"]["output_tail"].to_string();
    assert!(tail.contains("pw ********"), "{tail}");
}

/// An error message that quotes a value built from a secret (a playbook path made
/// of `${vault_password}`) reached the terminal and `logs/engine.log` as it was.
#[test]
fn an_error_built_from_a_secret_is_masked_on_the_terminal_and_in_the_log() {
    let home = Home::new();
    let dir = plan_dir(
        &home,
        &[(
            "plan.yaml",
            "id: p\nvars:\n  - name: vault_password\nphases:\n  - id: one\n    steps:\n      - id: site\n        playbook: \"books/${vault_password}/site.yaml\"\n",
        )],
    );
    let secret = "Vault-6d1f-never-shown";
    home.create(); // so the error is logged too
    let r = home.run(&[
        "deploy",
        "--plan",
        dir.join("plan.yaml").to_str().unwrap(),
        "--var",
        &format!("vault_password={secret}"),
    ]);
    r.expect(1, &["does not exist", "books/********/site.yaml"]);
    assert!(
        !r.stderr.contains(secret) && !r.stdout.contains(secret),
        "{}",
        r.stderr
    );
    for file in crate::migration::walk(home.path()) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        assert!(
            !text.contains(secret),
            "the secret is in {}",
            file.display()
        );
    }
    let log = std::fs::read_to_string(home.path().join("logs/engine.log")).unwrap();
    assert!(log.contains("books/********/site.yaml"), "{log}");
}

/// A step that prints in colour once left raw escape codes in the state (its error
/// message, its output tail, the events), so `status` and the window showed
/// `\x1b[31m`. What is stored is plain text; the log keeps the colours.
#[test]
fn colour_codes_stay_in_the_log_and_out_of_the_state() {
    let home = Home::new();
    let plan = one_step_plan(
        &home,
        // One stream, so the lines' order is the order printed (stdout and stderr
        // are read apart and may interleave either way).
        "printf '\\033[32mok\\033[0m first\\n' >&2; printf '\\033]0;a title\\007\\033[31;1mERROR\\033[0m: disk full\\n' >&2; exit 4",
    );
    let r = home.run(&["deploy", "--plan", plan.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let v = home.status_json();
    let error = &v["steps"][0]["last_error"];
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("ERROR: disk full"),
        "{error}"
    );
    let state = std::fs::read_to_string(home.state_file()).unwrap();
    assert!(!state.contains("\\u001b"), "an escape code is in the state");
    assert!(!state.contains('\u{1b}'), "an escape code is in the state");
    let tail: Vec<&str> = error["output_tail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(tail.contains(&"ok first"), "{tail:?}");
    let events = std::fs::read_to_string(home.layout().root.join("events.jsonl")).unwrap();
    assert!(
        !events.contains("\\u001b"),
        "an escape code is in the events"
    );
    // The log has the output as it was printed.
    let text = first_attempt_log(&home);
    assert!(
        text.windows(5).any(|w| w == b"\x1b[31;"),
        "the log lost the colours"
    );
}
