//! What this machine needs to run a plan, checked before anything is saved or run
//! (the review page, as the earlier installer's requirements page): Ansible, the
//! collections an upstream plan's playbooks use, git for its checkout, the SSH
//! tools for servers, sshpass for password logins, and room in the installer home.
//! Each requirement says what was found and, when it is not met, what to do.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::run::runner::{find_ansible_playbook, on_path};

/// The collections thinkube's playbooks use besides `ansible.builtin`, as Python
/// packages of the `ansible` community package.
pub const COLLECTIONS: &[&str] = &["kubernetes.core", "community.general", "ansible.posix"];

/// Free space the installer home needs: the venv with the collections (about
/// 500 MB), a checkout, logs.
pub const MIN_FREE_BYTES: u64 = 1 << 30;

/// One requirement, checked.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    pub name: String,
    pub ok: bool,
    /// What was found (a path, a version, the free space), or what is missing.
    pub details: String,
    /// What to do when it is not met.
    pub fix: Option<String>,
}

/// What the plan and the configuration need of this machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    /// Servers over SSH (ssh, ssh-keyscan, ssh-keygen).
    pub ssh: bool,
    /// A password login (sshpass).
    pub password: bool,
    /// A plan of another project's playbooks: its collections, and git for its checkout.
    pub upstream: bool,
}

/// Checks every requirement `needs` names, in order; never fails (each problem is a
/// requirement not met).
pub fn check(
    home: &Path,
    ansible_override: Option<&Path>,
    path: Option<&OsStr>,
    needs: Needs,
) -> Vec<Requirement> {
    let mut out = Vec::new();
    let setup_fix = || {
        Some(format!(
            "Install Ansible and its collections (the button here, or `thinkube-deploy setup`) into {}",
            home.join("venv").display()
        ))
    };
    let ansible = find_ansible_playbook(ansible_override, home, path);
    match &ansible {
        Ok(playbook) => out.push(Requirement {
            name: "Ansible".into(),
            ok: true,
            details: match version(playbook) {
                Some(v) => format!("{v} at {}", playbook.display()),
                None => playbook.display().to_string(),
            },
            fix: None,
        }),
        Err(e) => out.push(Requirement {
            name: "Ansible".into(),
            ok: false,
            details: e.to_string(),
            fix: setup_fix(),
        }),
    }
    if needs.upstream {
        let missing = match &ansible {
            Ok(playbook) => missing_collections(playbook),
            Err(_) => Err("no Ansible to look in".to_string()),
        };
        out.push(match missing {
            Ok(m) if m.is_empty() => Requirement {
                name: "Ansible collections".into(),
                ok: true,
                details: format!("{} are installed", COLLECTIONS.join(", ")),
                fix: None,
            },
            Ok(m) => Requirement {
                name: "Ansible collections".into(),
                ok: false,
                details: format!("{} not installed beside this Ansible", m.join(", ")),
                fix: setup_fix(),
            },
            Err(why) => Requirement {
                name: "Ansible collections".into(),
                ok: false,
                details: format!("could not be looked for: {why}"),
                fix: setup_fix(),
            },
        });
        out.push(tool("git", "the playbooks' checkout", "git", path));
    }
    if needs.ssh {
        for t in ["ssh", "ssh-keyscan", "ssh-keygen"] {
            out.push(tool(t, "servers over SSH", "openssh-client", path));
        }
    }
    if needs.password {
        out.push(tool("sshpass", "password logins", "sshpass", path));
    }
    out.push(disk(home));
    out
}

/// A program the plan needs, looked for on `path`.
fn tool(name: &str, for_what: &str, package: &str, path: Option<&OsStr>) -> Requirement {
    match on_path(name, path) {
        Some(found) => Requirement {
            name: name.into(),
            ok: true,
            details: found.display().to_string(),
            fix: None,
        },
        None => Requirement {
            name: name.into(),
            ok: false,
            details: format!("{name} is not installed (it is needed for {for_what})"),
            fix: Some(format!(
                "Install it (Debian and Ubuntu: `sudo apt-get install {package}`)"
            )),
        },
    }
}

/// `ansible-playbook --version`'s first line, e.g. `ansible-playbook [core 2.16.14]`.
fn version(playbook: &Path) -> Option<String> {
    let out = Command::new(playbook).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}

/// The Python an `ansible-playbook` script runs with: its `#!` line (for
/// `#!/usr/bin/env python3`, the program after env), with its arguments.
fn interpreter(playbook: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read(playbook).map_err(|e| format!("{}: {e}", playbook.display()))?;
    let first = text.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(first);
    let mut words: Vec<String> = line
        .strip_prefix("#!")
        .ok_or_else(|| format!("{} is not a Python script", playbook.display()))?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if words.first().is_some_and(|w| w.ends_with("/env")) {
        words.remove(0);
    }
    if words.is_empty() {
        return Err(format!("{} names no interpreter", playbook.display()));
    }
    Ok(words)
}

/// The collections of [`COLLECTIONS`] the Python of `playbook` cannot import.
fn missing_collections(playbook: &Path) -> Result<Vec<String>, String> {
    let python = interpreter(playbook)?;
    let script = format!(
        "import importlib.util as u\nfor c in {:?}:\n    try:\n        found = u.find_spec('ansible_collections.' + c) is not None\n    except ModuleNotFoundError:\n        found = False\n    if not found: print(c)\n",
        COLLECTIONS
    );
    let out = Command::new(&python[0])
        .args(&python[1..])
        .args(["-c", &script])
        .output()
        .map_err(|e| format!("{}: {e}", python[0]))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        return Err(said.lines().last().unwrap_or("it failed").to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect())
}

/// Free space where the installer home is (or will be: its nearest existing folder).
fn disk(home: &Path) -> Requirement {
    let mut at: PathBuf = home.to_path_buf();
    while !at.exists() {
        match at.parent() {
            Some(p) => at = p.to_path_buf(),
            None => break,
        }
    }
    let gib = |b: u64| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
    match free_bytes(&at) {
        Ok(free) if free >= MIN_FREE_BYTES => Requirement {
            name: "Disk space".into(),
            ok: true,
            details: format!("{} free in {}", gib(free), at.display()),
            fix: None,
        },
        Ok(free) => Requirement {
            name: "Disk space".into(),
            ok: false,
            details: format!(
                "{} free in {}; the installer needs {} (Ansible's collections, the checkout, logs)",
                gib(free),
                at.display(),
                gib(MIN_FREE_BYTES)
            ),
            fix: Some(
                "Free some space there, or set THINKUBE_INSTALLER_HOME to a folder on a larger disk".into(),
            ),
        },
        Err(e) => Requirement {
            name: "Disk space".into(),
            ok: false,
            details: format!("could not read the free space of {}: {e}", at.display()),
            fix: None,
        },
    }
}

fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `s` a valid, writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(s.f_bavail as u64 * s.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_name<'a>(all: &'a [Requirement], name: &str) -> &'a Requirement {
        all.iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no requirement {name} in {all:?}"))
    }

    #[test]
    fn on_a_bare_machine_each_missing_piece_is_named_with_what_to_do() {
        let home = tempfile::tempdir().unwrap();
        let empty = tempfile::tempdir().unwrap();
        let all = check(
            home.path(),
            None,
            Some(empty.path().as_os_str()),
            Needs {
                ssh: true,
                password: true,
                upstream: true,
            },
        );
        let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Ansible",
                "Ansible collections",
                "git",
                "ssh",
                "ssh-keyscan",
                "ssh-keygen",
                "sshpass",
                "Disk space"
            ]
        );
        let ansible = by_name(&all, "Ansible");
        assert!(!ansible.ok);
        assert!(
            ansible
                .details
                .contains("ansible-playbook is not installed"),
            "{ansible:?}"
        );
        assert!(
            ansible
                .fix
                .as_deref()
                .is_some_and(|f| f.contains("thinkube-deploy setup")),
            "{ansible:?}"
        );
        assert!(!by_name(&all, "Ansible collections").ok);
        let sshpass = by_name(&all, "sshpass");
        assert!(!sshpass.ok);
        assert_eq!(
            sshpass.fix.as_deref(),
            Some("Install it (Debian and Ubuntu: `sudo apt-get install sshpass`)")
        );
        assert_eq!(
            by_name(&all, "ssh-keyscan").details,
            "ssh-keyscan is not installed (it is needed for servers over SSH)"
        );
    }

    #[test]
    fn an_ansible_that_is_no_python_script_is_said_so() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("ansible-playbook");
        std::fs::write(&binary, b"\x7fELF\x02\x01").unwrap();
        assert_eq!(
            missing_collections(&binary),
            Err(format!("{} is not a Python script", binary.display()))
        );
        let bare_env = dir.path().join("env-only");
        std::fs::write(&bare_env, "#!/usr/bin/env\n").unwrap();
        assert_eq!(
            interpreter(&bare_env),
            Err(format!("{} names no interpreter", bare_env.display()))
        );
        assert_eq!(
            interpreter(&{
                let p = dir.path().join("args");
                std::fs::write(&p, "#!/opt/py/bin/python3 -E\nimport x\n").unwrap();
                p
            }),
            Ok(vec!["/opt/py/bin/python3".to_string(), "-E".to_string()])
        );
    }

    #[test]
    fn only_what_the_plan_and_target_need_is_checked() {
        let home = tempfile::tempdir().unwrap();
        let empty = tempfile::tempdir().unwrap();
        let all = check(
            home.path(),
            None,
            Some(empty.path().as_os_str()),
            Needs::default(),
        );
        let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["Ansible", "Disk space"]);
        // A home that does not exist yet: the space of the folder it will be made in.
        let later = home.path().join("not/yet");
        let disk = by_name(&check(&later, None, None, Needs::default()), "Disk space").clone();
        assert!(
            disk.details
                .ends_with(&format!("free in {}", home.path().display())),
            "{disk:?}"
        );
    }

    #[test]
    fn the_real_ansible_with_its_collections_and_the_real_tools_pass() {
        let Some(playbook) =
            std::env::var_os("THINKUBE_ANSIBLE_PLAYBOOK").filter(|p| !p.is_empty())
        else {
            eprintln!("skipped: THINKUBE_ANSIBLE_PLAYBOOK is not set (scripts/test-all sets it)");
            return;
        };
        let playbook = PathBuf::from(playbook);
        let home = tempfile::tempdir().unwrap();
        let path = std::env::var_os("PATH");
        let all = check(
            home.path(),
            Some(&playbook),
            path.as_deref(),
            Needs {
                ssh: on_path("ssh", path.as_deref()).is_some(),
                password: false,
                upstream: true,
            },
        );
        let ansible = by_name(&all, "Ansible");
        assert!(ansible.ok, "{ansible:?}");
        assert!(
            ansible.details.starts_with("ansible-playbook [core 2.16"),
            "{ansible:?}"
        );
        let collections = by_name(&all, "Ansible collections");
        assert!(collections.ok, "{collections:?}");
        assert_eq!(
            collections.details,
            "kubernetes.core, community.general, ansible.posix are installed"
        );
        // The ansible-core without the community package (a bare ansible-core venv)
        // lacks them, and says which: the python of a script without collections.
        let bare = home.path().join("ansible-playbook");
        std::fs::write(&bare, "#!/usr/bin/env python3\n").unwrap();
        let missing = missing_collections(&bare).unwrap();
        assert_eq!(
            missing,
            ["kubernetes.core", "community.general", "ansible.posix"]
        );
    }
}
