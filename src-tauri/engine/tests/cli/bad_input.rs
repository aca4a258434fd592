//! Unreadable state: every command exits 4 with the file's path, what is wrong and
//! what to do, and the file is byte-for-byte unchanged.

use crate::common::*;
use std::path::{Path, PathBuf};

/// A valid state file's bytes, made by the engine.
fn valid_state() -> Vec<u8> {
    let home = Home::new();
    run_deployment(
        &home.store(),
        &[("a", "p"), ("b", "p")],
        Some("b"),
        &[],
        at("2026-01-01T00:00:00Z"),
    );
    std::fs::read(home.state_file()).unwrap()
}

fn edited(f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&valid_state()).unwrap();
    f(&mut v);
    serde_json::to_vec_pretty(&v).unwrap()
}

/// Every command that reads or writes the state must refuse `bytes` with exit 4 and
/// `fragment` in the message, leaving the file as it was.
fn check(name: &str, bytes: Vec<u8>, fragment: &str) {
    let home = Home::new();
    home.write_state(&bytes);
    let path = home.state_file().display().to_string();
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["clean-state", "--yes"],
        &["migrate"],
        &["migrate", "--dry-run"],
        &["history"],
        &["cleanup"],
    ] {
        let r = home.run(args);
        assert_eq!(
            r.code, 4,
            "{name}: {args:?} exit code; stderr: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains(&path),
            "{name}: {args:?} does not name the file: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains(fragment),
            "{name}: {args:?} lacks {fragment:?}: {}",
            r.stderr
        );
        assert_eq!(
            r.stderr.lines().count(),
            1,
            "{name}: one line of error: {}",
            r.stderr
        );
        assert_eq!(
            std::fs::read(home.state_file()).unwrap(),
            bytes,
            "{name}: {args:?} modified the file"
        );
        assert!(
            !home.layout().backup_file().exists(),
            "{name}: a backup was written over"
        );
    }
}

#[test]
fn empty_and_whitespace_files() {
    check("empty", Vec::new(), "the file is empty");
    check("spaces", b"  \n\t\n".to_vec(), "the file is empty");
}

#[test]
fn truncated_at_many_offsets() {
    let good = valid_state();
    let n = good.len();
    for offset in [1, 2, n / 7, n / 3, n / 2, 2 * n / 3, n - 20, n - 2] {
        check(
            &format!("truncated at {offset}"),
            good[..offset].to_vec(),
            "recover --from-backup",
        );
    }
}

#[test]
fn garbage_and_non_objects() {
    check(
        "binary",
        (0u8..=255).cycle().take(4096).collect(),
        "not valid JSON",
    );
    check("array", b"[1, 2, 3]".to_vec(), "not an object");
    check(
        "unrelated json",
        br#"{"hello": "world"}"#.to_vec(),
        "not a Thinkube installer state",
    );
    check("nested", "[".repeat(100_000).into_bytes(), "not valid JSON");
}

#[test]
fn wrong_types_and_missing_fields() {
    check(
        "serial is a string",
        edited(|v| v["serial"] = "x".into()),
        "does not match the state format",
    );
    check(
        "bad lineage",
        edited(|v| v["lineage"] = "not-a-uuid".into()),
        "does not match the state format",
    );
    check(
        "bad status",
        edited(|v| v["deployment"]["status"] = "done".into()),
        "does not match the state format",
    );
    check(
        "no deployment",
        edited(|v| {
            v.as_object_mut().unwrap().remove("deployment");
        }),
        "missing field `deployment`",
    );
    check(
        "unknown field",
        edited(|v| v["surprise"] = 1.into()),
        "unknown field `surprise`",
    );
    check(
        "bad time",
        edited(|v| v["updated_at"] = "yesterday".into()),
        "not an RFC 3339 timestamp",
    );
}

#[test]
fn contradictions_are_refused() {
    check(
        "duplicate step ids",
        edited(|v| {
            let first = v["deployment"]["steps"][0].clone();
            v["deployment"]["steps"].as_array_mut().unwrap().push(first);
        }),
        "step id `a` appears more than once",
    );
    check(
        "completed with a failed step",
        edited(|v| v["deployment"]["status"] = "completed".into()),
        "the deployment is completed but step `b` is failed",
    );
}

#[test]
fn a_newer_schema_version_is_refused_untouched() {
    check(
        "future",
        edited(|v| v["schema_version"] = 99.into()),
        "schema version 99, newer than this program understands",
    );
}

#[test]
fn a_symlinked_state_file_is_refused_and_its_target_untouched() {
    let home = Home::new();
    let elsewhere = home.outside("elsewhere.json");
    home.create();
    let good = valid_state();
    std::fs::write(&elsewhere, &good).unwrap();
    std::os::unix::fs::symlink(&elsewhere, home.state_file()).unwrap();
    home.run(&["status"]).expect(4, &["symbolic link"]);
    home.run(&["clean-state", "--yes"])
        .expect(4, &["symbolic link"]);
    assert_eq!(std::fs::read(&elsewhere).unwrap(), good);
    assert!(
        std::fs::symlink_metadata(home.state_file())
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_100_mb_state_file_is_refused_by_its_size_untouched() {
    let home = Home::new();
    home.create();
    let path = home.state_file();
    {
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(100 * 1024 * 1024).unwrap(); // sparse: 100 MB of zero bytes
    }
    let before = std::fs::metadata(&path).unwrap().len();
    for args in [&["status"][..], &["clean-state", "--yes"], &["migrate"]] {
        home.run(args).expect(4, &["104857600 bytes", "is not one"]);
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), before);
    assert!(!home.layout().backup_file().exists());
}

#[test]
fn bad_plans_and_inventories_are_refused_before_anything_is_written() {
    let home = Home::new();
    let big = home.outside("big.yaml");
    std::fs::write(
        &big,
        format!("# {}\nphases: []\n", "x".repeat(2 * 1024 * 1024)),
    )
    .unwrap();
    home.run(&["deploy", "--plan", big.to_str().unwrap()])
        .expect(2, &["plans are at most"]);
    let malformed = home.outside("malformed.yaml");
    std::fs::write(&malformed, "phases:\n  - id: p\n    steps: [\n").unwrap();
    home.run(&["plan", "show", "--plan", malformed.to_str().unwrap()])
        .expect(2, &["malformed.yaml:"]);
    let traversal = home.outside("traversal.yaml");
    std::fs::write(
        &traversal,
        "phases:\n  - id: p\n    steps:\n      - id: s\n        playbook: ../../../etc/passwd\n",
    )
    .unwrap();
    home.run(&["deploy", "--plan", traversal.to_str().unwrap()])
        .expect(2, &["leaves the plan's folder"]);
    home.run(&[
        "deploy",
        "--inventory",
        home.outside("missing-inventory.yaml").to_str().unwrap(),
    ])
    .expect(2, &["the inventory", "does not exist"]);
    let broken = home.outside("broken-inventory.yaml");
    std::fs::write(
        &broken,
        "all:\n  hosts:\n    web: {ansible_host: [unclosed\n",
    )
    .unwrap();
    home.run(&["deploy", "--inventory", broken.to_str().unwrap()])
        .expect(2, &["broken-inventory.yaml is not valid YAML at line"]);
    let listy = home.outside("list-inventory.yaml");
    std::fs::write(&listy, "- just\n- a list\n").unwrap();
    home.run(&["deploy", "--inventory", listy.to_str().unwrap()])
        .expect(2, &["its top level must be a mapping"]);
    home.run(&["deploy", "--flag", "report"])
        .expect(2, &["is not NAME=true|false"]);
    home.run(&["deploy", "--var", "=x"])
        .expect(2, &["has no KEY"]);
    assert!(!home.path().exists(), "a refused command wrote files");
}

#[test]
fn a_state_this_user_may_not_read_exits_4_untouched() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "a_state_this_user_may_not_read: runs as root (as in CI), to act as another user"
        );
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    home.write_state(&valid_state());
    // Let `nobody` walk to the file, but not read it.
    for dir in [home.outside(""), home.path().to_path_buf()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(home.state_file(), std::fs::Permissions::from_mode(0o000)).unwrap();
    let before = std::fs::read(home.state_file()).unwrap();
    let as_nobody = |args: &[&str]| {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .args(args)
            .env("THINKUBE_INSTALLER_HOME", home.path())
            .env("HOME", home.outside("user-home"))
            .output()
            .unwrap();
        Run::from(out)
    };
    as_nobody(&["status"]).expect(
        4,
        &[
            "cannot be read by this user (permission denied)",
            "mode 0600",
        ],
    );
    // A writer cannot even open the lock file in a home that is not its own.
    as_nobody(&["clean-state", "--yes"]).expect(
        1,
        &["permission denied: check the owner and mode of the installer home"],
    );
    assert_eq!(std::fs::read(home.state_file()).unwrap(), before);
    let mode = std::fs::metadata(home.state_file())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0, "the mode was changed");
}

#[test]
fn a_playbook_missing_from_the_checkout_exits_1_naming_it_and_nothing_runs_or_is_written() {
    // A literal path is checked when the plan is read (an invalid plan, exit 2, above);
    // a path made of a variable, such as a checkout's root, when the deployment
    // starts: the plan is fine, the checkout does not match it.
    let home = Home::new();
    let dir = home.outside("plan");
    let checkout = home.outside("checkout");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&checkout).unwrap();
    std::fs::write(
        dir.join("plan.yaml"),
        "id: p\nvars:\n  - name: playbooks_root\nphases:\n  - id: one\n    steps:\n      - id: site\n        playbook: \"${playbooks_root}/site.yaml\"\n",
    )
    .unwrap();
    let plan = dir.join("plan.yaml");
    let root = format!("playbooks_root={}", checkout.display());
    home.run(&["deploy", "--plan", plan.to_str().unwrap(), "--var", &root])
        .expect(
            1,
            &[&format!(
                "step `site`: playbook {} does not exist; check the plan and its --var values. Nothing ran",
                checkout.join("site.yaml").display()
            )],
        );
    assert!(!home.path().exists(), "a refused deploy wrote files");
}

/// Numbers at the edge of u64 once panicked (exit 101): a retry delay accepted by the
/// plan's validation, a lock wait, a hand-edited serial. Each is refused at the edge
/// with what to change, and nothing is written.
#[test]
fn numbers_too_large_are_refused_without_a_panic() {
    let home = Home::new();
    let text = "id: big\nphases:\n  - id: p\n    steps:\n      - id: s\n        command: [\"false\"]\n        retries: 1\n        retry_delay_seconds: 18446744073709551615\n";
    let dir = plan_dir(&home, &[("plan.yaml", text)]);
    let plan = dir.join("plan.yaml");
    home.run(&["deploy", "--plan", plan.to_str().unwrap()])
        .expect(2, &["retry_delay_seconds", "at most 3600"]);
    assert!(!home.state_file().exists(), "a refused plan wrote a state");

    home.run(&["--lock-timeout", "18446744073709551615", "status"])
        .expect(2, &["--lock-timeout", "18446744073709551615"]);

    let mut state: serde_json::Value = serde_json::from_slice(&valid_state()).unwrap();
    state["serial"] = serde_json::json!(u64::MAX);
    let bytes = serde_json::to_vec_pretty(&state).unwrap();
    home.write_state(&bytes);
    home.run(&["clean-state", "--yes"])
        .expect(4, &["serial", "largest number", "recover --from-backup"]);
    assert_eq!(std::fs::read(home.state_file()).unwrap(), bytes);
    assert_eq!(home.status_json()["deployment"]["status"], "failed");

    state["serial"] = serde_json::json!(7);
    state["last_event_seq"] = serde_json::json!(u64::MAX);
    let bytes = serde_json::to_vec_pretty(&state).unwrap();
    home.write_state(&bytes);
    home.run(&["clean-state", "--yes"])
        .expect(4, &["last event number", "largest number"]);
    assert_eq!(std::fs::read(home.state_file()).unwrap(), bytes);
}

/// `resume` or `retry` with no deployment said "ansible-playbook is not installed"
/// (exit 1) when Ansible was missing too. Nothing to do is the answer whatever else
/// is missing: exit 2, the way on, and no state written.
#[test]
fn resume_and_retry_with_no_deployment_say_so_before_looking_for_ansible() {
    let home = Home::new();
    let missing = home.outside("no-ansible/ansible-playbook");
    for (args, says) in [
        (&["resume"][..], "there is nothing to resume"),
        (&["retry"][..], "there is nothing to retry"),
        (&["retry", "s1"][..], "there is nothing to retry"),
    ] {
        let r = Run::from(
            home.command(args)
                .env("THINKUBE_ANSIBLE_PLAYBOOK", &missing)
                .env("PATH", "/usr/bin:/bin")
                .output()
                .unwrap(),
        );
        r.expect(2, &[says, "thinkube-deploy deploy"]);
        assert!(!r.stderr.contains("ansible-playbook"), "{}", r.stderr);
        assert!(!home.state_file().exists(), "{args:?} wrote a state");
    }
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {path:?}"
    );
}

/// Named pipes where files should be hung commands, some while holding the lock
/// (`status`, which must never block, hung on the lock info file). Each is now
/// refused or skipped at once, naming what is wrong, and nothing is changed.
#[test]
fn fifos_where_files_should_be_are_named_not_waited_on() {
    let says = "named pipe (FIFO), not a regular file";

    // recover --from a FIFO, over an unreadable state: exit 4, the state untouched.
    let home = Home::new();
    home.write_state(b"{ not json");
    let fifo = home.outside("state.fifo");
    mkfifo(&fifo);
    home.run_within(30, &["recover", "--from", fifo.to_str().unwrap()])
        .expect(4, &[says, "nothing was changed"]);
    assert_eq!(std::fs::read(home.state_file()).unwrap(), b"{ not json");

    // The lock info file, a run file and the events: status answers, history names
    // the run file and goes on.
    let home = Home::new();
    home.write_state(&valid_state());
    mkfifo(&home.layout().lock_info_file());
    std::fs::create_dir_all(home.layout().runs_dir()).unwrap();
    mkfifo(&home.layout().runs_dir().join("r-fifo.json"));
    let r = home.run_within(30, &["status", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = home.run_within(30, &["history"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("r-fifo.json") && r.stderr.contains(says),
        "{}",
        r.stderr
    );
    mkfifo(&home.layout().events_file());
    home.run_within(30, &["events"])
        .expect(1, &["events.jsonl", says]);
    let before = std::fs::read(home.state_file()).unwrap();
    home.run_within(30, &["clean-state", "--yes"])
        .expect(1, &["events.jsonl", says]);
    assert_eq!(std::fs::read(home.state_file()).unwrap(), before);

    // The lock file itself, the configuration, and a plan given as a FIFO.
    let home = Home::new();
    home.create();
    mkfifo(&home.path().join("deployment-state.lock"));
    home.run_within(30, &["clean-state", "--yes"])
        .expect(1, &["lock file", says]);
    let home = Home::new();
    home.create();
    mkfifo(&home.path().join("installer-config.json"));
    let plan = dir_plan(&home);
    home.run_within(30, &["deploy", "--plan", plan.to_str().unwrap()])
        .expect(2, &["installer-config.json", says]);
    assert!(!home.state_file().exists());
    let fifo_plan = home.outside("plan.fifo");
    mkfifo(&fifo_plan);
    let home = Home::new();
    home.run_within(30, &["deploy", "--plan", fifo_plan.to_str().unwrap()])
        .expect(2, &["plan.fifo", says]);
    assert!(!home.state_file().exists());
    let fifo_inventory = home.outside("inventory.fifo.yaml");
    mkfifo(&fifo_inventory);
    let plan = dir_plan(&home);
    home.run_within(
        30,
        &[
            "deploy",
            "--plan",
            plan.to_str().unwrap(),
            "--inventory",
            fifo_inventory.to_str().unwrap(),
        ],
    )
    .expect(2, &["inventory.fifo.yaml", says]);
    assert!(!home.state_file().exists());
}

fn dir_plan(home: &Home) -> PathBuf {
    let text =
        "id: ok\nphases:\n  - id: p\n    steps:\n      - id: s\n        command: [\"true\"]\n";
    plan_dir(home, &[("plan.yaml", text)]).join("plan.yaml")
}

/// A playbook reached through a symbolic link that points outside the plan's
/// folder was accepted (the plan's check sees only the path's text): refused,
/// exit 2, naming where the link leads; nothing written.
#[test]
fn a_playbook_linked_from_outside_the_plan_folder_is_refused() {
    let home = Home::new();
    let dir = plan_dir(
        &home,
        &[(
            "plan.yaml",
            "id: p\nphases:\n  - id: one\n    steps:\n      - id: site\n        playbook: site.yaml\n",
        )],
    );
    let elsewhere = home.outside("elsewhere.yaml");
    std::fs::write(&elsewhere, "- hosts: all\n  tasks: []\n").unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.join("site.yaml")).unwrap();
    home.run(&["deploy", "--plan", dir.join("plan.yaml").to_str().unwrap()])
        .expect(
            2,
            &[
                "step `site`",
                "through a symbolic link",
                "elsewhere.yaml",
                "Nothing ran",
            ],
        );
    assert!(!home.state_file().exists());
}

/// There was no way to write a literal `${` in a command (the shell's `${#T}`):
/// `$${` is one, and `$$` alone is left as it is.
#[test]
fn a_literal_dollar_brace_reaches_the_command() {
    let home = Home::new();
    let dir = plan_dir(
        &home,
        &[(
            "plan.yaml",
            "id: p\nphases:\n  - id: one\n    steps:\n      - id: s\n        command: [sh, -c, \"T=abcd; echo $${#T} > len\"]\n",
        )],
    );
    let r = home.run(&["deploy", "--plan", dir.join("plan.yaml").to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(dir.join("len")).unwrap(), "4\n");
}

/// A valid inventory that uses one anchor for 150 hosts was refused as invalid
/// YAML (the parser's alias-to-anchor ratio); Ansible reads it, and so do we.
#[test]
fn an_inventory_using_one_anchor_many_times_is_accepted() {
    let home = Home::new();
    let mut text =
        String::from("all:\n  vars:\n    base: &base\n      ansible_connection: local\n  hosts:\n");
    for i in 0..150 {
        text.push_str(&format!("    host{i}:\n      <<: *base\n"));
    }
    let inventory = home.outside("inventory.yaml");
    std::fs::write(&inventory, text).unwrap();
    let plan = dir_plan(&home);
    let r = home.run(&[
        "deploy",
        "--plan",
        plan.to_str().unwrap(),
        "--inventory",
        inventory.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// Messages that pointed the wrong way: a corrupt run file was called "the state
/// file" with `recover --from-backup` as the cure; a state path that is a folder
/// did not say so; and a refused `resume` in a fresh home must create nothing.
#[test]
fn messages_name_the_file_that_is_wrong_and_what_it_is() {
    let home = Home::new();
    let store = home.store();
    let run_id = run_deployment(
        &store,
        &[("a", "p")],
        Some("a"),
        &[],
        at("2026-01-01T00:00:00Z"),
    );
    run_deployment(&store, &[("a", "p")], None, &[], at("2026-01-02T00:00:00Z"));
    let run_file = home.layout().run_file(&run_id);
    std::fs::write(&run_file, b"{ torn").unwrap();
    let state = std::fs::read(home.state_file()).unwrap();
    let r = home.run(&["show-run", &run_id]);
    r.expect(4, &["the run file", "runs/", "state is not affected"]);
    assert!(!r.stderr.contains("recover --from-backup"), "{}", r.stderr);
    assert_eq!(std::fs::read(&run_file).unwrap(), b"{ torn");
    assert_eq!(std::fs::read(home.state_file()).unwrap(), state);

    let home = Home::new();
    home.create();
    std::fs::create_dir(home.state_file()).unwrap();
    home.run(&["status"]).expect(
        4,
        &[
            "deployment-state.json",
            "it is a folder, not a regular file",
        ],
    );

    let home = Home::new();
    home.run(&["resume"])
        .expect(2, &["there is nothing to resume"]);
    assert!(!home.path().exists(), "a refused resume created the home");
}

/// The shell's `PWD` was taken for a secret (`pwd` is a short form of password),
/// so every message naming a file under the folder a command ran in showed
/// `********` in place of that folder.
#[test]
fn the_working_folder_is_not_taken_for_a_secret() {
    let home = Home::new();
    let cwd = home.outside("");
    let missing = home.outside("no-such-plan.yaml");
    let r = Run::from(
        home.command(&["deploy", "--plan", missing.to_str().unwrap()])
            .current_dir(&cwd)
            .env("PWD", &cwd)
            .output()
            .unwrap(),
    );
    r.expect(2, &[missing.to_str().unwrap()]);
    assert!(!r.stderr.contains("********"), "{}", r.stderr);
}

/// An INI inventory (what the earlier installer's backend wrote) must deploy: the
/// host key check reads its hosts too, and took it for invalid YAML.
#[test]
fn an_ini_inventory_deploys() {
    let home = Home::new();
    let inventory = home.outside("hosts");
    std::fs::write(
        &inventory,
        "[all:vars]\nansible_become=no\n\n[here]\nlocalhost ansible_connection=local\n",
    )
    .unwrap();
    let book = "- hosts: all\n  gather_facts: false\n  vars:\n    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"\n  tasks:\n    - ansible.builtin.debug: {msg: hi}\n";
    let dir = plan_dir(
        &home,
        &[
            (
                "plan.yaml",
                "id: p\nphases:\n  - id: one\n    steps:\n      - id: s\n        playbook: book.yaml\n",
            ),
            ("book.yaml", book),
        ],
    );
    let plan = dir.join("plan.yaml");
    let r = home.run(&[
        "deploy",
        "--plan",
        plan.to_str().unwrap(),
        "--inventory",
        inventory.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}

/// A program the engine asks on the user's behalf failing is not bad input: git
/// unable to clone the checkout exits 1 (a check failed), with git's own words.
#[test]
fn a_source_git_cannot_clone_exits_1_with_what_git_said() {
    let home = Home::new();
    let missing = home.outside("no-such-repository");
    home.run(&["source", "--from", missing.to_str().unwrap()])
        .expect(1, &["could not clone", "git says:", "does not exist"]);
}
