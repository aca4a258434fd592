//! A real full disk (a 256 KiB tmpfs, mounted when the tests run as root, as in CI):
//! a command that must write fails with the disk-full message, the state is
//! byte-for-byte what it was, `status` still answers, and once space is freed the
//! next command works.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    filler
}

#[test]
fn a_full_disk_fails_the_command_clearly_and_keeps_the_state() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "disk_full: not root, so no tmpfs can be mounted; the simulated faults in power_loss.rs cover this"
        );
        return;
    }
    let outer = tempfile::tempdir().unwrap();
    let mnt = outer.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success(), "running as root, a tmpfs must mount");
    let _mounted = Mounted(mnt.clone());
    let home_dir = mnt.join("home");
    let run = |args: &[&str]| {
        Run::from(
            Command::new(BIN)
                .args(args)
                .env("THINKUBE_INSTALLER_HOME", &home_dir)
                .env("HOME", outer.path())
                .env_remove("THINKUBE_LOG")
                .output()
                .unwrap(),
        )
    };
    let plan = outer.path().join("plan.yaml");
    std::fs::write(&plan, "phases:\n  - id: p\n    steps:\n      - id: a\n        command: [\"true\"]\n      - id: b\n        command: [\"true\"]\n").unwrap();
    let r = run(&["deploy", "--plan", plan.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let state = home_dir.join("deployment-state.json");
    let before = std::fs::read(&state).unwrap();
    let filler = fill(&mnt);
    let r = run(&["clean-state", "--yes"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("the disk is full: free some space and run the command again; the previous state is intact"), "{}", r.stderr);
    assert_eq!(
        std::fs::read(&state).unwrap(),
        before,
        "the state changed on a full disk"
    );
    let status = run(&["status", "--json"]);
    assert_eq!(
        status.code, 0,
        "status must answer on a full disk: {}",
        status.stderr
    );
    std::fs::remove_file(filler).unwrap();
    let r = run(&["clean-state", "--yes"]);
    assert_eq!(r.code, 0, "after freeing space: {}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(v["deployment"]["status"], "not_started");
}

/// Log write errors were silent: on a full disk a step's log was cut short or
/// empty without a word. With the logs on a full disk (a 64 KiB tmpfs) and the
/// state on a disk with room, a step printing 1 MB still runs; the output and the
/// attempt's `step_note` event say the log is incomplete.
#[test]
fn a_log_that_cannot_be_written_is_said_to_be_incomplete() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("disk_full: not root, so no tmpfs can be mounted; skipped");
        return;
    }
    let home = Home::new();
    home.create();
    let logs = home.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&logs)
        .status()
        .unwrap();
    assert!(ok.success(), "running as root, a tmpfs must mount");
    let _mounted = Mounted(logs.clone());
    let dir = plan_dir(
        &home,
        &[(
            "plan.yaml",
            "id: p\nphases:\n  - id: one\n    steps:\n      - id: loud\n        command: [sh, -c, \"head -c 1000000 /dev/zero | tr '\\\\0' x; echo\"]\n",
        )],
    );
    let r = home.run(&["deploy", "--plan", dir.join("plan.yaml").to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let said = format!("{}{}", r.stdout, r.stderr);
    assert!(
        said.contains("the step's log could not be written"),
        "{}",
        &said[said.len().saturating_sub(2000)..]
    );
    let events = home.run(&["events"]).stdout;
    assert!(events.contains("log could not be written"), "{events}");
}
