//! `setup`: installs the pinned ansible-core and the `ansible` community package (its
//! collections: thinkube's playbooks use them) into the installer's own virtual
//! environment (`<home>/venv`), where the runner looks for it after
//! THINKUBE_ANSIBLE_PLAYBOOK and before PATH. The versions installed are recorded in
//! the venv; a changed pin reinstalls.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{EngineError, Result};
use crate::state::fsops::FileOps;

/// The ansible-core the installer is tested with: the line the earlier thinkube
/// installer pins (`ansible-core>=2.16,<2.17`), which thinkube's playbooks are
/// written for; it runs on Python 3.10 to 3.12.
pub const ANSIBLE_CORE: &str = "ansible-core==2.16.14";

/// The community package carrying the collections thinkube's playbooks use
/// (`ansible>=9,<10` in the earlier installer; ansible-galaxy's server cannot be
/// reached from every machine, PyPI can).
pub const ANSIBLE_PACKAGE: &str = "ansible==9.13.0";

/// What the venv's marker file records: the pins, one per line.
pub fn pins() -> String {
    format!("{ANSIBLE_CORE}\n{ANSIBLE_PACKAGE}\n")
}

/// What `setup` did.
#[derive(Debug)]
pub enum SetupOutcome {
    AlreadyInstalled(PathBuf),
    Installed(PathBuf),
}

/// Creates `<home>/venv` with `python` and installs [`ANSIBLE_CORE`] into it, unless
/// it is there already. Files are private to the user (umask 077).
pub fn install_ansible(home: &Path, python: &str, fs: &dyn FileOps) -> Result<SetupOutcome> {
    let venv = home.join("venv");
    let playbook = venv.join("bin/ansible-playbook");
    let marker = venv.join("thinkube-ansible-core");
    if playbook.is_file() && fs.read(&marker).ok().flatten().as_deref() == Some(pins().as_bytes()) {
        return Ok(SetupOutcome::AlreadyInstalled(playbook));
    }
    fs.create_dir_all(home)
        .map_err(|e| EngineError::io("create the folder", home, e))?;
    run_private(
        Command::new(python)
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
        "create a Python virtual environment with",
        python,
    )?;
    let pip = venv.join("bin/pip");
    run_private(
        Command::new(&pip).args([
            "install",
            "--disable-pip-version-check",
            "--quiet",
            ANSIBLE_CORE,
            ANSIBLE_PACKAGE,
        ]),
        "install ansible-core and the ansible package with",
        &pip.display().to_string(),
    )?;
    if !playbook.is_file() {
        return Err(EngineError::AnsibleMissing(format!(
            "pip finished but {} is missing",
            playbook.display()
        )));
    }
    // pip keeps some packages' own modes (0755 compiled modules) whatever the umask.
    make_private_tree(&venv).map_err(|e| EngineError::io("make private", &venv, e))?;
    fs.replace(&marker, pins().as_bytes())
        .map_err(|e| EngineError::io("write", &marker, e))?;
    Ok(SetupOutcome::Installed(playbook))
}

fn run_private(cmd: &mut Command, what: &'static str, program: &str) -> Result<()> {
    // SAFETY: umask(2) is async-signal-safe and touches no memory; it runs in the
    // child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o077);
            Ok(())
        });
    }
    let out = cmd
        .output()
        .map_err(|e| EngineError::io(what, program, e))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string();
        return Err(EngineError::AnsibleMissing(format!(
            "could not {what} {program} ({}): {last}; check that python3 and its venv module are installed (Debian: apt-get install python3-venv) and that PyPI is reachable",
            out.status
        )));
    }
    Ok(())
}

/// Removes group and other permissions from everything under `dir` (symbolic links
/// are left as they are: their own mode means nothing on Linux).
fn make_private_tree(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = path.symlink_metadata()?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
        if meta.is_dir() {
            make_private_tree(&path)?;
        }
    }
    Ok(())
}
