//! Real OpenSSH servers on 127.0.0.1: each test starts its own `sshd` on a free port
//! with a host key and a client key it made, and stops it when done. Host keys are
//! trusted only explicitly (`hosts trust`), checked strictly by every Ansible
//! connection, and a changed key is refused as a possible attack.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::*;

const SSHD: &str = "/usr/sbin/sshd";

/// An sshd of our own, stopped (by pid) when dropped, with the connections it
/// serves (each a process below it, which would outlive it).
pub struct Sshd {
    child: Child,
}

impl Sshd {
    /// Stops it and every connection it serves: as a server that went down mid-step.
    fn kill_with_connections(self) {
        drop(self)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        for pid in descendants(self.child.id()) {
            // SAFETY: kill(2) on a process below our own child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The processes below `pid` (children, theirs, ...), read from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let child: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // `pid (comm) state ppid ...`: comm may hold spaces, so read after ')'.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((child, ppid))
        })
        .collect();
    let mut found = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for &(child, parent) in &parents {
            if parent == p {
                found.push(child);
                todo.push(child);
            }
        }
    }
    found
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
    let auth = format!(
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nAuthorizedKeysFile {}\n",
        dir.join("client.pub").display()
    );
    start_sshd_with(dir, host_key, port, &auth)
}

/// Starts sshd on `port` with `host_key` and the authentication lines `auth`.
fn start_sshd_with(dir: &Path, host_key: &Path, port: u16, auth: &str) -> Sshd {
    std::fs::create_dir_all("/run/sshd").unwrap();
    let config = dir.join(format!("sshd_config-{port}"));
    std::fs::write(
        &config,
        format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nPidFile none\nUsePAM no\nStrictModes no\n{auth}",
            host_key.display(),
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

/// A Linux user made for one test, with a password and sudo that asks for it;
/// removed (with its home and sudoers entry) when dropped.
struct TestUser {
    name: String,
    password: String,
    sudoers: PathBuf,
}

impl TestUser {
    fn new(port: u16) -> TestUser {
        let name = format!("tkt{port}");
        let password = format!("pw-{port}-{}", std::process::id());
        let _ = Command::new("userdel").args(["-r", &name]).output();
        let ok = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "useradd {name}");
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        writeln!(chpasswd.stdin.take().unwrap(), "{name}:{password}").unwrap();
        assert!(chpasswd.wait().unwrap().success(), "chpasswd {name}");
        let sudoers = PathBuf::from(format!("/etc/sudoers.d/{name}"));
        std::fs::write(&sudoers, format!("{name} ALL=(ALL:ALL) ALL\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sudoers, std::fs::Permissions::from_mode(0o440)).unwrap();
        TestUser {
            name,
            password,
            sudoers,
        }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sudoers);
        let _ = Command::new("userdel").args(["-r", &self.name]).output();
    }
}

fn can_run_sudo() -> bool {
    let found = ["sudo", "sshpass", "useradd", "chpasswd"]
        .iter()
        .all(|tool| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .any(|d| d.join(tool).is_file())
        });
    if !found {
        eprintln!(
            "ssh: skipped: needs sudo, sshpass, useradd and chpasswd (scripts/ensure-system installs them)"
        );
    }
    found
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                todo.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                found.push(path);
            }
        }
    }
    found
}

/// Two servers: `one` logs in a user with a password and becomes root with sudo's
/// password; `two` logs in root with a key. The pre-flight names what is missing
/// or wrong for each (no password, a wrong one, no become password, a wrong one)
/// and nothing runs; with both right the plan runs on both, as root, and neither
/// password is in any file of the installer's home.
#[test]
fn two_hosts_one_with_a_password_and_sudo_the_other_with_a_key() {
    if !can_run() || !can_run_sudo() {
        return;
    }
    let home = Home::new();
    let dir = home.outside("ssh");
    std::fs::create_dir_all(&dir).unwrap();
    keygen(&dir.join("client"));
    keygen(&dir.join("hostkey-one"));
    keygen(&dir.join("hostkey-two"));
    let (port_one, port_two) = (free_port(), free_port());
    let user = TestUser::new(port_one);
    let _one = start_sshd_with(
        &dir,
        &dir.join("hostkey-one"),
        port_one,
        &format!(
            "PermitRootLogin no\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\nAllowUsers {}\n",
            user.name
        ),
    );
    let _two = start_sshd(&dir, &dir.join("hostkey-two"), port_two);
    let book = "- hosts: all\n  gather_facts: false\n  become: true\n  tasks:\n    - ansible.builtin.command: \"touch {{ marker }}\"\n";
    let plan = plan_dir(
        &home,
        &[
            (
                "plan.yaml",
                "id: two-hosts\nphases:\n  - id: p\n    steps:\n      - id: s\n        playbook: book.yaml\n",
            ),
            ("book.yaml", book),
        ],
    )
    .join("plan.yaml");
    let inventory = dir.join("inventory.yaml");
    std::fs::write(
        &inventory,
        format!(
            "all:\n  vars:\n    ansible_python_interpreter: /usr/bin/python3\n  hosts:\n    one:\n      ansible_host: 127.0.0.1\n      ansible_port: {port_one}\n      ansible_user: {}\n      ansible_password: \"{{{{ lookup('env', 'THINKUBE_SSH_PASSWORD') }}}}\"\n      ansible_become_pass: \"{{{{ lookup('env', 'ANSIBLE_BECOME_PASSWORD') }}}}\"\n      marker: {}\n    two:\n      ansible_host: 127.0.0.1\n      ansible_port: {port_two}\n      ansible_user: root\n      ansible_ssh_private_key_file: {}\n      marker: {}\n",
            user.name,
            dir.join("ran-on-one").display(),
            dir.join("client").display(),
            dir.join("ran-on-two").display(),
        ),
    )
    .unwrap();
    let inv = inventory.to_str().unwrap();
    let r = home.run(&["hosts", "trust", "--inventory", inv, "--yes"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("Trusted one, two"), "{}", r.stdout);

    let deploy = [
        "deploy",
        "--plan",
        plan.to_str().unwrap(),
        "--inventory",
        inv,
    ];
    let run = |env: &[(&str, &str)]| {
        let mut c = home.command(&deploy);
        c.env_remove("THINKUBE_SSH_PASSWORD")
            .env_remove("ANSIBLE_BECOME_PASSWORD");
        for (k, v) in env {
            c.env(k, v);
        }
        Run::from(c.output().unwrap())
    };
    let pw = user.password.as_str();
    let one = format!("one (127.0.0.1:{port_one})");
    run(&[]).expect(
        2,
        &[
            "1 host is not ready, so nothing ran",
            &one,
            "logs in with a password: give it in THINKUBE_SSH_PASSWORD",
        ],
    );
    run(&[("THINKUBE_SSH_PASSWORD", "not-it")])
        .expect(2, &[&one, "the login failed", "Permission denied"]);
    run(&[("THINKUBE_SSH_PASSWORD", pw)]).expect(
        2,
        &[&one, "sudo asks for a password", "ANSIBLE_BECOME_PASSWORD"],
    );
    run(&[
        ("THINKUBE_SSH_PASSWORD", pw),
        ("ANSIBLE_BECOME_PASSWORD", "not-it"),
    ])
    .expect(2, &[&one, "sudo did not accept the become password"]);
    assert!(!dir.join("ran-on-one").exists() && !dir.join("ran-on-two").exists());
    assert_eq!(
        home.status_json()["deployment"]["status"],
        "not_started",
        "a refused pre-flight started a deployment"
    );

    let r = run(&[
        ("THINKUBE_SSH_PASSWORD", pw),
        ("ANSIBLE_BECOME_PASSWORD", pw),
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    use std::os::unix::fs::MetadataExt;
    for marker in ["ran-on-one", "ran-on-two"] {
        let meta = std::fs::metadata(dir.join(marker)).unwrap();
        assert_eq!(meta.uid(), 0, "{marker} was not made as root");
    }
    let found = files_containing(home.path(), pw);
    assert!(found.is_empty(), "the password is in {found:?}");
}

/// A server that goes down in the middle of a step: the step fails "unreachable",
/// naming the host; once the server is back, `retry` finishes the deployment.
#[test]
fn a_server_that_goes_down_mid_step_is_named_unreachable_and_retry_finishes() {
    if !can_run() || !can_run_sudo() {
        return;
    }
    let home = Home::new();
    let dir = home.outside("ssh");
    std::fs::create_dir_all(&dir).unwrap();
    keygen(&dir.join("client"));
    keygen(&dir.join("hostkey"));
    let port = free_port();
    let sshd = start_sshd(&dir, &dir.join("hostkey"), port);
    let (started, go, done) = (dir.join("started"), dir.join("go"), dir.join("done"));
    let book = format!(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.command: \"touch {}\"\n      args: {{creates: {}}}\n    - ansible.builtin.wait_for: {{path: {}, timeout: 120}}\n      delegate_to: localhost\n    - ansible.builtin.command: \"touch {}\"\n",
        started.display(),
        started.display(),
        go.display(),
        done.display()
    );
    let plan = plan_dir(
        &home,
        &[
            (
                "plan.yaml",
                "id: goes-down\nphases:\n  - id: p\n    steps:\n      - id: s\n        playbook: book.yaml\n",
            ),
            ("book.yaml", &book),
        ],
    )
    .join("plan.yaml");
    let inventory = dir.join("inventory.yaml");
    std::fs::write(
        &inventory,
        format!(
            "all:\n  hosts:\n    srv:\n      ansible_host: 127.0.0.1\n      ansible_port: {port}\n      ansible_user: root\n      ansible_ssh_private_key_file: {}\n      ansible_python_interpreter: /usr/bin/python3\n",
            dir.join("client").display()
        ),
    )
    .unwrap();
    let inv = inventory.to_str().unwrap();
    assert_eq!(
        home.run(&["hosts", "trust", "--inventory", inv, "--yes"])
            .code,
        0
    );
    let child = home
        .command(&[
            "deploy",
            "--plan",
            plan.to_str().unwrap(),
            "--inventory",
            inv,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first task ran on the server: the step is under way. Then the server and
    // its connections go, before the step goes on.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first task never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    sshd.kill_with_connections();
    std::fs::write(&go, "").unwrap();
    let status = wait_within(180, "deploy against a server that went down", child);
    assert_eq!(status.code(), Some(1));
    let v = home.status_json();
    let e = &v["steps"][0]["last_error"];
    assert_eq!(v["steps"][0]["status"], "failed", "{v}");
    assert_eq!(e["host"], "srv", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("host srv unreachable"),
        "{e}"
    );
    assert!(!done.exists());

    // The server is back (same key): retry runs the step again and finishes.
    let _sshd = start_sshd(&dir, &dir.join("hostkey"), port);
    let r = home.run(&["retry"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(done.exists());
    assert_eq!(home.status_json()["deployment"]["status"], "completed");
}

/// What the window trusts: only the fingerprint the user was shown. A host that
/// offers another key by the time the user accepts is refused and nothing is
/// recorded; the key shown is recorded, for the host's address and port.
#[test]
fn the_window_trusts_only_the_fingerprint_the_user_accepted() {
    use thinkube_engine::config::{InstallerConfig, SshAuth, TargetKind};
    use thinkube_engine::facts::host_keys::{self, Trust};
    if !can_run() {
        return;
    }
    let home = Home::new();
    let dir = home.outside("ssh");
    std::fs::create_dir_all(&dir).unwrap();
    keygen(&dir.join("client"));
    keygen(&dir.join("hostkey"));
    let port = free_port();
    let _sshd = start_sshd(&dir, &dir.join("hostkey"), port);
    let config: InstallerConfig = serde_json::from_value(serde_json::json!({
        "target": "ssh", "plan": "demo", "ssh_user": "root", "ssh_auth": "key",
        "ssh_key_path": dir.join("client"),
        "hosts": [{"name": "srv", "address": "127.0.0.1", "port": port}],
    }))
    .unwrap();
    assert_eq!(config.target, TargetKind::Ssh);
    assert_eq!(config.ssh_auth, SshAuth::Key);
    let hosts = host_keys::config_hosts(&config);
    assert_eq!(hosts.len(), 1);
    assert_eq!(
        (hosts[0].port, hosts[0].user.as_deref()),
        (port, Some("root"))
    );
    let shown = host_keys::check(home.path(), &hosts);
    assert_eq!(shown[0].trust, Trust::Unknown);
    let real = shown[0].fingerprint.clone().unwrap();
    assert_eq!(real, fingerprint_of(&dir.join("hostkey.pub")));

    let e = host_keys::trust_accepted(
        home.path(),
        &hosts,
        &[("srv".into(), "SHA256:not-what-it-offers".into())],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("instead of the key you accepted") && e.contains(&real),
        "{e}"
    );
    assert!(!home.path().join("known_hosts").exists());

    let now = host_keys::trust_accepted(home.path(), &hosts, &[("srv".into(), real)]).unwrap();
    assert_eq!(now[0].trust, Trust::Trusted);
}

/// `facts --refresh` reads each SSH host's hardware over the same strict connection
/// (here the machine itself behind a real sshd: its cores, memory and OS), kept as a
/// `hardware/NAME` fact with its age; a host whose key is not trusted is not logged in
/// to, and its fact says why.
#[test]
fn hardware_is_read_over_ssh_only_from_a_trusted_host() {
    if !can_run() {
        return;
    }
    let home = Home::new();
    let dir = home.outside("ssh");
    std::fs::create_dir_all(&dir).unwrap();
    keygen(&dir.join("client"));
    keygen(&dir.join("hostkey"));
    let port = free_port();
    let _sshd = start_sshd(&dir, &dir.join("hostkey"), port);
    let host = format!("srv=127.0.0.1:{port}");
    let key = dir.join("client");
    let r = home.run(&[
        "configure",
        "--plan",
        "demo",
        "--target",
        "ssh",
        "--host",
        &host,
        "--ssh-user",
        "root",
        "--ssh-auth",
        "key",
        "--ssh-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let hardware = || {
        let r = home.run(&["facts", "--refresh", "--json"]);
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v.as_array()
            .or_else(|| v["facts"].as_array())
            .unwrap()
            .iter()
            .find(|f| f["key"] == "hardware/srv")
            .cloned()
            .unwrap_or_else(|| panic!("no hardware fact in {v}"))
    };
    let untrusted = hardware();
    assert!(
        untrusted["value"]["error"]
            .as_str()
            .unwrap()
            .contains("not trusted"),
        "{untrusted}"
    );
    assert_eq!(untrusted["value"]["cpu_cores"], serde_json::Value::Null);

    assert_eq!(home.run(&["hosts", "trust", "--yes"]).code, 0);
    let fact = hardware();
    let v = &fact["value"];
    assert_eq!(v["error"], serde_json::Value::Null, "{fact}");
    // What `nproc` says here (the host is this machine), which may differ from a
    // cgroup quota Rust's own count would take into account.
    let nproc = Command::new("nproc").output().unwrap();
    let cores: u64 = String::from_utf8_lossy(&nproc.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(v["cpu_cores"].as_u64(), Some(cores), "{fact}");
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert_eq!(v["memory_mib"].as_u64(), Some(mem_kib / 1024));
    assert!(v["disk_total_gib"].as_u64().is_some(), "{fact}");
    let os = std::fs::read_to_string("/etc/os-release").unwrap();
    assert!(
        os.contains(v["os"].as_str().unwrap()),
        "{} is not in /etc/os-release",
        v["os"]
    );
    assert_eq!(v["arch"].as_str(), Some(std::env::consts::ARCH));
    assert_eq!(fact["ttl_seconds"], 86400);
}
