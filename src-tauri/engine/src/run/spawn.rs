//! Starting a step's process: in a process group of its own, and set to get SIGTERM
//! when the runner dies (the kernel's parent-death signal), without `fork`.
//!
//! `fork` copies the page tables of the whole process; in the desktop app, which maps
//! a web view, that took 5 ms or more per step (docs/benchmarks.md, "The window's
//! cost over headless"), against well under one for `posix_spawn`, which shares the
//! parent's memory until the child execs. The standard library uses `posix_spawn` only
//! when nothing must run between fork and exec, so the parent-death signal is set by
//! util-linux's `setpriv --pdeathsig TERM`, which then execs the step's program in the
//! same process (same pid, same group). Where `setpriv` cannot do that (not
//! installed, too old), the step is started as before: `fork`, then `prctl` in the
//! child.
//!
//! Either way a runner killed in the instant between starting the step and the
//! signal being set (before the exec; with `setpriv`, about a millisecond) leaves the
//! step running; the next writer then finds it alive and refuses to start another
//! (exit 3, naming its pid) until it has ended.

use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::error::{EngineError, Result};
use crate::run::runner::StepCommand;

/// Where `setpriv` is looked for (not on PATH: a step's PATH is the plan's to set).
const SETPRIV: [&str; 2] = ["/usr/bin/setpriv", "/bin/setpriv"];

/// Starts `cmd` with piped output, no input, in a process group of its own.
pub(crate) fn spawn(cmd: &StepCommand) -> Result<Child> {
    let mut command = match setpriv() {
        Some(setpriv) => {
            let program = resolve(&cmd.program, cmd.cwd.as_deref(), child_path(cmd).as_deref())
                .map_err(|e| EngineError::io("start", &cmd.program, e))?;
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "TERM", "--"]).arg(program);
            c
        }
        None => forked(&cmd.program),
    };
    command
        .args(&cmd.args)
        .envs(&cmd.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(cwd) = &cmd.cwd {
        command.current_dir(cwd);
    }
    command
        .spawn()
        .map_err(|e| EngineError::io("start", &cmd.program, e))
}

/// A command for `program` that sets the parent-death signal between fork and exec.
fn forked(program: &Path) -> Command {
    let mut command = Command::new(program);
    // SAFETY: prctl(2) with PR_SET_PDEATHSIG is async-signal-safe and touches no
    // memory; it runs in the child between fork and exec. If the runner is killed
    // (SIGKILL gives it no chance to clean up), the step gets SIGTERM instead of
    // running on unobserved.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            );
            Ok(())
        });
    }
    command
}

/// Starts the search for `setpriv` (which runs it once, a few milliseconds) on a
/// thread of its own, so that it overlaps the run's first commit instead of
/// delaying the first step. The first spawn waits for it if it is not done yet.
pub(crate) fn find_setpriv_in_background() {
    let _ = std::thread::Builder::new()
        .name("find-setpriv".into())
        .spawn(|| {
            setpriv();
        });
}

/// `setpriv`, if it is there and sets the parent-death signal (util-linux 2.33 and
/// later); asked once a process.
fn setpriv() -> Option<&'static Path> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let path = SETPRIV.iter().map(Path::new).find(|p| p.is_file())?;
            let works = Command::new(path)
                .args(["--pdeathsig", "TERM", "--", "/bin/sh", "-c", ":"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            works.then(|| path.to_path_buf())
        })
        .as_deref()
}

/// The PATH the step's program is looked up in: the step's own when it sets one,
/// else the runner's (as `execvp` in the child would).
fn child_path(cmd: &StepCommand) -> Option<std::ffi::OsString> {
    match cmd.env.get("PATH") {
        Some(p) => Some(p.into()),
        None => std::env::var_os("PATH"),
    }
}

/// The program the child would exec, found as `execvp` finds it: a name with a `/`
/// as it is (relative to the step's folder), else the first executable file of that
/// name in `path_var`'s folders. A program that is not there, or not executable, is
/// the error its exec would have given, so a step that cannot start says so as
/// before instead of failing inside `setpriv`.
fn resolve(program: &Path, cwd: Option<&Path>, path_var: Option<&OsStr>) -> io::Result<PathBuf> {
    let executable =
        |p: &Path| std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.as_os_str().as_encoded_bytes().contains(&b'/') {
        let full = match cwd {
            Some(dir) if program.is_relative() => dir.join(program),
            _ => program.to_path_buf(),
        };
        return match executable(&full)? {
            true => Ok(full),
            false => Err(io::Error::from(io::ErrorKind::PermissionDenied)),
        };
    }
    let mut denied = false;
    for dir in std::env::split_paths(path_var.unwrap_or_default()) {
        // An empty entry is the current folder, as for execvp.
        let dir = if dir.as_os_str().is_empty() {
            cwd.map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        } else if dir.is_relative() {
            cwd.map_or_else(|| dir.clone(), |c| c.join(&dir))
        } else {
            dir
        };
        let candidate = dir.join(program);
        match executable(&candidate) {
            Ok(true) => return Ok(candidate),
            Ok(false) => denied = true,
            Err(_) => {}
        }
    }
    Err(io::Error::from(if denied {
        io::ErrorKind::PermissionDenied
    } else {
        io::ErrorKind::NotFound
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write_program(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn programs_are_found_as_execvp_finds_them() {
        let dir = tempfile::tempdir().unwrap();
        let first = tempfile::tempdir().unwrap();
        write_program(first.path(), "tool", 0o644);
        let tool = write_program(dir.path(), "tool", 0o755);
        let path = std::env::join_paths([first.path(), dir.path()]).unwrap();
        assert_eq!(
            resolve(Path::new("tool"), None, Some(&path)).unwrap(),
            tool,
            "a file that is not executable is passed over"
        );
        assert_eq!(
            resolve(Path::new("./tool"), Some(dir.path()), None).unwrap(),
            dir.path().join("./tool"),
            "a relative path is the step's folder's"
        );
        assert_eq!(
            resolve(Path::new("missing"), None, Some(&path))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            resolve(Path::new("tool"), None, Some(first.path().as_os_str()))
                .unwrap_err()
                .kind(),
            io::ErrorKind::PermissionDenied
        );
        assert_eq!(
            resolve(&dir.path().join("nope"), None, None)
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn a_step_is_the_process_started_and_leads_its_own_group() {
        let cmd = StepCommand {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                "grep -E '^(Pid|PPid):' /proc/self/status; cat /proc/self/stat".into(),
            ],
            env: Default::default(),
            cwd: None,
            ansible: false,
            redact: Default::default(),
        };
        let child = spawn(&cmd).unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("Pid:\t{pid}\n")),
            "the step is the process spawned (setpriv execs it): {text}"
        );
        // Field 5 of /proc/PID/stat is the process group: the step leads its own.
        let stat = text.lines().last().unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let pgrp: u32 = after_name.split(' ').nth(2).unwrap().parse().unwrap();
        assert_eq!(pgrp, pid);
        let missing = StepCommand {
            program: "thinkube-no-such-program".into(),
            ..cmd
        };
        let e = spawn(&missing).unwrap_err();
        assert!(
            e.to_string()
                .contains("could not start thinkube-no-such-program"),
            "{e}"
        );
    }

    /// The kernel sends the signal when the thread that started the step ends (the
    /// runner's thread, which lives as long as the step, or the runner killed).
    #[test]
    fn a_step_whose_runner_is_gone_gets_sigterm() {
        let cmd = StepCommand {
            program: "sleep".into(),
            args: vec!["30".into()],
            env: Default::default(),
            cwd: None,
            ansible: false,
            redact: Default::default(),
        };
        let mut child = std::thread::spawn(move || {
            let child = spawn(&cmd).unwrap();
            // setpriv sets the signal before it execs the step: wait for the exec.
            let comm = format!("/proc/{}/comm", child.id());
            while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
                std::thread::yield_now();
            }
            child
        })
        .join()
        .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM),
            "{status}"
        );
    }

    #[test]
    fn setpriv_is_used_where_it_is_installed() {
        if !SETPRIV.iter().any(|p| Path::new(p).is_file()) {
            eprintln!("skipped: no setpriv on this machine (the fork path is used)");
            return;
        }
        assert!(
            setpriv().is_some(),
            "setpriv is installed and sets the parent-death signal"
        );
    }
}
