//! Real OpenSSH servers on 127.0.0.1: each test starts its own `sshd` on a free port
//! with a host key and a client key it made, and stops it when done. Host keys are
//! trusted only explicitly (`hosts trust`), checked strictly by every Ansible
//! connection, and a changed key is refused as a possible attack.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::*;

const SSHD: &str = "/usr/sbin/sshd";

/// An sshd of our own, stopped (by pid) when dropped.
pub struct Sshd {
    child: Child,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "thinkube-test", "-f"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ssh-keygen {path:?}");
}

/// The fingerprint of a public key file, as `ssh-keygen -l` prints it.
fn fingerprint_of(public: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .unwrap()
        .to_string()
}

/// Starts sshd on `port` with `host_key`, letting in `client.pub` as root; returns
/// once it listens (it says so on stderr).
pub fn start_sshd(dir: &Path, host_key: &Path, port: u16) -> Sshd {
    std::fs::create_dir_all("/run/sshd").unwrap();
    let config = dir.join(format!("sshd_config-{port}"));
    std::fs::write(
        &config,
        format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nPidFile none\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nAuthorizedKeysFile {}\n",
            host_key.display(),
            dir.join("client.pub").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains("Server listening on") {
            break;
        }
        assert!(!line.contains("fatal"), "sshd: {line}");
    }
    // Keep reading its log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Sshd { child }
}

pub fn can_run() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !Path::new(SSHD).exists() {
        eprintln!(
            "ssh: skipped: needs root and {SSHD} (scripts/ensure-system installs openssh-server; CI runs as root)"
        );
        return false;
    }
    true
}

struct Setup {
    home: Home,
    dir: PathBuf,
    plan: PathBuf,
    inventory: PathBuf,
}

fn setup(port: u16) -> Setup {
    let home = Home::new();
    let dir = home.outside("ssh");
    std::fs::create_dir_all(&dir).unwrap();
    keygen(&dir.join("client"));
    let book = "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.command: \"touch {{ marker }}\"\n";
    let plan_dir = plan_dir(
        &home,
        &[
            (
                "plan.yaml",
                "id: over-ssh\nphases:\n  - id: p\n    steps:\n      - id: s\n        playbook: book.yaml\n",
            ),
            ("book.yaml", book),
        ],
    );
    let inventory = dir.join("inventory.yaml");
    std::fs::write(
        &inventory,
        format!(
            "all:\n  hosts:\n    srv:\n      ansible_host: 127.0.0.1\n      ansible_port: {port}\n      ansible_user: root\n      ansible_ssh_private_key_file: {}\n      ansible_python_interpreter: /usr/bin/python3\n      marker: {}\n",
            dir.join("client").display(),
            dir.join("ran-over-ssh").display()
        ),
    )
    .unwrap();
    Setup {
        home,
        dir,
        plan: plan_dir.join("plan.yaml"),
        inventory,
    }
}

/// `hosts check` is the pre-flight of all of this. A new server's key is refused until trusted (exit 2, its fingerprint and the
/// command named); `hosts trust` records it (0600); the deployment then runs over
/// SSH with strict checking; a changed key is refused as a possible attack, by
/// `retry` and by `hosts trust`, with both fingerprints.
#[test]
fn host_keys_are_trusted_explicitly_and_a_changed_key_is_refused() {
    if !can_run() {
        return;
    }
    let port = free_port();
    let s = setup(port);
    keygen(&s.dir.join("hostkey"));
    let expected = fingerprint_of(&s.dir.join("hostkey.pub"));
    let sshd = start_sshd(&s.dir, &s.dir.join("hostkey"), port);
    let inv = s.inventory.to_str().unwrap();

    let r = s.home.run(&["hosts", "--inventory", inv, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["name"], "srv");
    assert_eq!(v[0]["port"], port);
    assert_eq!(v[0]["reachable"], true);
    assert_eq!(v[0]["trust"], "unknown");
    assert_eq!(v[0]["fingerprint"], expected.as_str());

    s.home.run(&["hosts", "check", "--inventory", inv]).expect(
        2,
        &[
            "1 of 1 host(s) not ready",
            "srv",
            "is not trusted",
            "hosts trust srv",
        ],
    );

    let deploy = [
        "deploy",
        "--plan",
        s.plan.to_str().unwrap(),
        "--inventory",
        inv,
    ];
    s.home.run(&deploy).expect(
        2,
        &[
            "srv",
            &expected,
            "is not trusted yet",
            "thinkube-deploy hosts trust srv",
            "nothing ran",
        ],
    );
    assert!(!s.dir.join("ran-over-ssh").exists());

    let r = s
        .home
        .run(&["hosts", "trust", "srv", "--inventory", inv, "--yes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(&expected), "{}", r.stdout);
    let known = s.home.path().join("known_hosts");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&known).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(&known)
            .unwrap()
            .contains(&format!("[127.0.0.1]:{port} ssh-ed25519 "))
    );
    let v: serde_json::Value =
        serde_json::from_str(&s.home.run(&["hosts", "--inventory", inv, "--json"]).stdout).unwrap();
    assert_eq!(v[0]["trust"], "trusted");

    // Pre-flight: answers, trusted, the login works (root needs no sudo).
    let r = s.home.run(&["hosts", "check", "--inventory", inv]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("login ✓") && r.stdout.contains("not needed (root)"),
        "{}",
        r.stdout
    );
    // A key the server does not let in: the login is named as what fails.
    keygen(&s.dir.join("stranger"));
    let text = std::fs::read_to_string(&s.inventory).unwrap().replace(
        &s.dir.join("client").display().to_string(),
        &s.dir.join("stranger").display().to_string(),
    );
    let stranger = s.dir.join("stranger-inventory.yaml");
    std::fs::write(&stranger, text).unwrap();
    s.home
        .run(&["hosts", "check", "--inventory", stranger.to_str().unwrap()])
        .expect(2, &["srv", "the login failed", "Permission denied"]);

    let r = s.home.run(&deploy);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        s.dir.join("ran-over-ssh").exists(),
        "the step did not run over SSH"
    );

    // An inventory that also sets a password: Ansible goes through `sshpass`, which
    // the up-front check found (the key still logs in).
    if std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("sshpass").is_file())
    {
        assert_eq!(s.home.run(&["clean-state", "--yes"]).code, 0);
        std::fs::remove_file(s.dir.join("ran-over-ssh")).unwrap();
        let with_password = s.dir.join("password-inventory.yaml");
        let text = std::fs::read_to_string(&s.inventory).unwrap();
        std::fs::write(
            &with_password,
            format!("{text}      ansible_password: not-the-way-in\n"),
        )
        .unwrap();
        let r = s.home.run(&[
            "deploy",
            "--plan",
            s.plan.to_str().unwrap(),
            "--inventory",
            with_password.to_str().unwrap(),
        ]);
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        assert!(s.dir.join("ran-over-ssh").exists());
    } else {
        eprintln!(
            "ssh: sshpass is not installed (scripts/ensure-system installs it): the run through it was skipped"
        );
    }

    // The server gets another key (reinstalled, or someone in between).
    drop(sshd);
    keygen(&s.dir.join("hostkey2"));
    let new = fingerprint_of(&s.dir.join("hostkey2.pub"));
    let _sshd = start_sshd(&s.dir, &s.dir.join("hostkey2"), port);
    for args in [
        &["retry", "s"][..],
        &["hosts", "trust", "srv", "--inventory", inv, "--yes"],
    ] {
        s.home.run(args).expect(
            2,
            &[
                "host key changed",
                &new,
                &expected,
                "may be an attack",
                "ssh-keygen -R",
            ],
        );
    }
    assert!(
        std::fs::read_to_string(&known).unwrap().lines().count() == 1,
        "the changed key was recorded"
    );
}
