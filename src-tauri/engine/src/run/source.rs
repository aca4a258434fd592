//! The checkout an upstream plan's playbooks come from (`upstream:` in the plan):
//! `thinkube-deploy source` puts it at `<home>/sources/<name>` at the pinned commit,
//! and every run checks it is there, at that commit, without local changes, before a
//! step runs. `--var playbooks_root=PATH` names a checkout of one's own instead,
//! which is used as it is.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{EngineError, Result};
use crate::plan::{PLAYBOOKS_ROOT, Plan, Upstream};

/// Where a plan's playbooks are read from, and whose that folder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// The plan's own folder (a plan without `upstream:`).
    PlanFolder(PathBuf),
    /// The installer's checkout of the upstream, at the pinned commit.
    Pinned(PathBuf),
    /// A checkout given with `--var playbooks_root=PATH`, used as it is.
    Own(PathBuf),
}

impl Root {
    pub fn dir(&self) -> &Path {
        match self {
            Root::PlanFolder(d) | Root::Pinned(d) | Root::Own(d) => d,
        }
    }
}

/// `<home>/sources/<name>`: the installer's checkout of `upstream`.
pub fn checkout_dir(home: &Path, upstream: &Upstream) -> PathBuf {
    home.join("sources").join(upstream.name())
}

/// Where `plan`'s playbooks are, with these variables.
pub fn root(plan: &Plan, vars: &std::collections::BTreeMap<String, String>, home: &Path) -> Root {
    match &plan.upstream {
        None => Root::PlanFolder(plan.base_dir.clone()),
        Some(u) => match vars.get(PLAYBOOKS_ROOT) {
            Some(own) => {
                let p = Path::new(own);
                Root::Own(std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
            }
            None => Root::Pinned(checkout_dir(home, u)),
        },
    }
}

/// What a checkout is: its commit and what differs from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutState {
    pub head: String,
    /// `git status --porcelain` lines: changed and untracked files (ignored files,
    /// such as thinkube's own `inventory/inventory.yaml`, are not changes).
    pub changes: Vec<String>,
}

fn git(dir: Option<&Path>) -> Command {
    let mut c = Command::new("git");
    if let Some(d) = dir {
        c.arg("-C").arg(d);
    }
    // Never ask for a password on a terminal, never page.
    c.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PAGER", "cat")
        .args(["-c", "advice.detachedHead=false"]);
    c
}

/// Runs git; its stdout, or what it said went wrong.
fn run_git(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => EngineError::ToolMissing {
            tool: "git",
            why: format!("{what} needs git"),
        },
        _ => EngineError::io("run", "git", e),
    })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(git printed nothing)")
        .trim()
        .to_string();
    Err(EngineError::Unavailable(format!(
        "could not {what}: git says: {said}"
    )))
}

/// The checkout's commit and local changes; `None` when `dir` is not a git checkout.
pub fn inspect(dir: &Path) -> Result<Option<CheckoutState>> {
    if !dir.join(".git").exists() {
        return Ok(None);
    }
    let head = run_git(
        git(Some(dir)).args(["rev-parse", "HEAD"]),
        &format!("read the commit of {}", dir.display()),
    )?;
    let status = run_git(
        git(Some(dir)).args(["status", "--porcelain", "--untracked-files=normal"]),
        &format!("read the changes in {}", dir.display()),
    )?;
    Ok(Some(CheckoutState {
        head: head.trim().to_string(),
        changes: status.lines().map(|l| l.to_string()).collect(),
    }))
}

fn source_command(plan: &Plan) -> String {
    if plan.source == plan.id {
        "thinkube-deploy source".to_string()
    } else {
        format!("thinkube-deploy source --plan {}", plan.source)
    }
}

/// A plan's checkout as the window shows it: where it is, its commit, and whether a
/// run may use it (else what a run would say).
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceView {
    pub repository: String,
    /// The commit the plan pins.
    pub pinned: String,
    pub dir: String,
    /// The commit the checkout is at; none when there is no checkout.
    pub head: Option<String>,
    /// A checkout of one's own (`--var playbooks_root=PATH`), used as it is.
    pub own: bool,
    /// Why a run would refuse it (the same words), when it would.
    pub problem: Option<String>,
}

/// The checkout `plan` needs with these variables; `None` for a plan that runs its
/// own playbooks.
pub fn view(
    plan: &Plan,
    vars: &std::collections::BTreeMap<String, String>,
    home: &Path,
) -> Result<Option<SourceView>> {
    let Some(upstream) = &plan.upstream else {
        return Ok(None);
    };
    let root = root(plan, vars, home);
    // One look at the checkout, for its commit and for what a run would say.
    let state = inspect(root.dir())?;
    let pinned_state = state.as_ref().filter(|_| matches!(root, Root::Pinned(_)));
    let problem = match check_state(plan, &root, pinned_state) {
        Ok(()) => None,
        Err(EngineError::Checkout(why)) => Some(why),
        Err(other) => return Err(other),
    };
    Ok(Some(SourceView {
        repository: upstream.repository.clone(),
        pinned: upstream.commit.clone(),
        dir: root.dir().display().to_string(),
        head: state.map(|s| s.head),
        own: matches!(root, Root::Own(_)),
        problem,
    }))
}

/// Refuses a run whose pinned checkout is missing, at another commit, or changed.
/// A checkout of one's own is checked only to exist.
pub fn check(plan: &Plan, root: &Root) -> Result<()> {
    let state = match root {
        Root::Pinned(dir) => inspect(dir)?,
        _ => None,
    };
    check_state(plan, root, state.as_ref())
}

/// [`check`] of a checkout already inspected (`state`: what [`inspect`] found in a
/// pinned root).
fn check_state(plan: &Plan, root: &Root, state: Option<&CheckoutState>) -> Result<()> {
    let (dir, upstream) = match (root, &plan.upstream) {
        (Root::PlanFolder(_), _) | (_, None) => return Ok(()),
        (Root::Own(dir), Some(_)) => {
            if dir.is_dir() {
                return Ok(());
            }
            return Err(EngineError::Checkout(format!(
                "--var {PLAYBOOKS_ROOT}={} is not a folder: give the path of a checkout of the plan's playbooks, or leave the variable out to use the installer's own checkout. Nothing ran",
                dir.display()
            )));
        }
        (Root::Pinned(dir), Some(u)) => (dir, u),
    };
    let fetch = source_command(plan);
    match state {
        None => Err(EngineError::Checkout(format!(
            "plan {} runs the playbooks of {} at {}, and there is no checkout of it at {}: run `{fetch}` (add --from PATH for a local clone, mirror or bundle), or give a checkout of your own with --var {PLAYBOOKS_ROOT}=PATH. Nothing ran",
            plan.id,
            upstream.repository,
            short(&upstream.commit),
            dir.display()
        ))),
        Some(s) if s.head != upstream.commit => Err(EngineError::Checkout(format!(
            "the checkout {} is at commit {}, not at {} that plan {} pins: run `{fetch}` to move it to the pinned commit (or use another commit on purpose with --var {PLAYBOOKS_ROOT}={}). Nothing ran",
            dir.display(),
            short(&s.head),
            short(&upstream.commit),
            plan.id,
            dir.display()
        ))),
        Some(s) if !s.changes.is_empty() => Err(EngineError::Checkout(format!(
            "the checkout {} has local changes ({}): the plan runs the playbooks as commit {} has them. Look with `git -C {} status`; put them away (`git -C {} stash -u`) and run again, or run your changed playbooks on purpose with --var {PLAYBOOKS_ROOT}={}. Nothing ran",
            dir.display(),
            changes_summary(&s.changes),
            short(&upstream.commit),
            dir.display(),
            dir.display(),
            dir.display()
        ))),
        Some(_) => Ok(()),
    }
}

fn changes_summary(changes: &[String]) -> String {
    let names: Vec<&str> = changes
        .iter()
        .map(|l| l.get(3..).unwrap_or(l).trim())
        .take(5)
        .collect();
    let more = changes.len().saturating_sub(names.len());
    let mut s = format!(
        "{} file{}: {}",
        changes.len(),
        if changes.len() == 1 { "" } else { "s" },
        names.join(", ")
    );
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// What `source` did.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fetched {
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub dir: PathBuf,
    pub from: String,
    pub commit: String,
    /// Whether the checkout was made now (else an existing one was moved or kept).
    pub cloned: bool,
    /// The plan's pin, when `--commit` chose another commit.
    pub pinned: Option<String>,
}

/// Puts the installer's checkout of `plan`'s upstream at `commit` (default: the
/// pin), cloning it from `from` (default: the upstream repository; a folder, mirror
/// or bundle works too). Refuses to touch a checkout with local changes.
pub fn fetch(
    home: &Path,
    plan: &Plan,
    from: Option<&str>,
    commit: Option<&str>,
) -> Result<Fetched> {
    let Some(upstream) = &plan.upstream else {
        return Err(EngineError::Usage(format!(
            "plan {} runs its own playbooks (it has no `upstream:`), so it needs no checkout",
            plan.id
        )));
    };
    let commit = match commit {
        None => upstream.commit.clone(),
        Some(c) if c.len() >= 7 && c.len() <= 40 && c.chars().all(|x| x.is_ascii_hexdigit()) => {
            c.to_ascii_lowercase()
        }
        Some(c) => {
            return Err(EngineError::Usage(format!(
                "--commit {c} is not a commit id: give its hexadecimal digits (at least 7)"
            )));
        }
    };
    let from = match from {
        None => upstream.repository.clone(),
        Some(f) if Path::new(f).exists() => std::path::absolute(f)
            .unwrap_or_else(|_| PathBuf::from(f))
            .display()
            .to_string(),
        Some(f) => f.to_string(),
    };
    let dir = checkout_dir(home, upstream);
    let mut cloned = false;
    match inspect(&dir)? {
        Some(s) if !s.changes.is_empty() => {
            return Err(EngineError::Checkout(format!(
                "the checkout {} has local changes ({}); nothing was changed. Put them away (`git -C {} stash -u`) or remove the folder, then run `source` again",
                dir.display(),
                changes_summary(&s.changes),
                dir.display()
            )));
        }
        Some(_) => {}
        None if dir.exists()
            && dir
                .read_dir()
                .map(|mut d| d.next().is_some())
                .unwrap_or(true) =>
        {
            return Err(EngineError::Checkout(format!(
                "{} exists and is not a git checkout; nothing was changed. Move it away, then run `source` again",
                dir.display()
            )));
        }
        None => {
            let parent = dir.parent().unwrap_or(home);
            std::fs::create_dir_all(parent)
                .map_err(|e| EngineError::io("create the folder", parent, e))?;
            run_git(
                git(None)
                    .args(["clone", "--quiet", "--no-checkout", "--"])
                    .arg(&from)
                    .arg(&dir),
                &format!("clone {from}"),
            )?;
            cloned = true;
        }
    }
    let have = |c: &str| {
        git(Some(&dir))
            .args(["cat-file", "-e", &format!("{c}^{{commit}}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have(&commit) {
        // Fetch every branch and tag: a bundle or mirror offers refs, not commits.
        run_git(
            git(Some(&dir)).args([
                "fetch",
                "--quiet",
                "--",
                &from,
                "+refs/heads/*:refs/remotes/source/*",
                "+refs/tags/*:refs/tags/*",
            ]),
            &format!("fetch from {from}"),
        )?;
        if !have(&commit) {
            // A clone made just now that lacks the commit is no checkout to keep.
            if cloned {
                let _ = std::fs::remove_dir_all(&dir);
            }
            return Err(EngineError::Checkout(format!(
                "commit {commit} is not in {from}: give a source that has it with --from PATH|URL (a clone, mirror or bundle of {})",
                upstream.repository
            )));
        }
    }
    run_git(
        git(Some(&dir)).args(["checkout", "--quiet", "--detach", &commit]),
        &format!("check out {commit} in {}", dir.display()),
    )?;
    let head = inspect(&dir)?.map(|s| s.head).unwrap_or_default();
    if !head.starts_with(&commit) {
        return Err(EngineError::Checkout(format!(
            "{} is at {head} after checking out {commit}; run `source` again",
            dir.display()
        )));
    }
    Ok(Fetched {
        dir,
        from,
        pinned: (head != upstream.commit).then(|| upstream.commit.clone()),
        commit: head,
        cloned,
    })
}

/// The inventory a run of an upstream plan passes to Ansible, beside the checkout's
/// `inventory/group_vars` and `host_vars`: Ansible reads those from the inventory's
/// folder, and thinkube keeps its group variables there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryBeside {
    /// The deployment's inventory.
    pub from: PathBuf,
    /// Its copy, which `-i` names.
    pub to: PathBuf,
    /// (link, target) for each of the checkout's variable folders.
    pub links: Vec<(PathBuf, PathBuf)>,
}

/// Where a run of `root`'s playbooks finds `inventory` with the checkout's variable
/// folders: a copy in `folder`, beside links to them; `None` when it needs nothing (no
/// upstream, no variable folders, or the inventory is in the checkout's `inventory/`).
pub fn inventory_beside(root: &Root, inventory: &Path, folder: &Path) -> Option<InventoryBeside> {
    let dir = match root {
        Root::PlanFolder(_) => return None,
        Root::Pinned(d) | Root::Own(d) => d.join("inventory"),
    };
    if inventory.parent() == Some(dir.as_path()) {
        return None;
    }
    let links: Vec<(PathBuf, PathBuf)> = ["group_vars", "host_vars"]
        .iter()
        .map(|name| (folder.join(name), dir.join(name)))
        .filter(|(_, target)| target.is_dir())
        .collect();
    if links.is_empty() {
        return None;
    }
    let name = inventory
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "inventory.yaml".into());
    Some(InventoryBeside {
        from: inventory.to_path_buf(),
        to: folder.join(name),
        links,
    })
}

impl InventoryBeside {
    /// Writes the copy and the links (replacing what was there from earlier runs).
    pub fn write(&self, fs: &dyn crate::state::fsops::FileOps) -> Result<()> {
        let folder = self.to.parent().unwrap_or(Path::new("."));
        if folder.exists() {
            std::fs::remove_dir_all(folder)
                .map_err(|e| EngineError::io("clear the folder", folder, e))?;
        }
        fs.create_dir_all(folder)
            .map_err(|e| EngineError::io("create the folder", folder, e))?;
        let bytes = crate::config::read_limited(&self.from)?.unwrap_or_default();
        fs.replace(&self.to, &bytes)
            .map_err(|e| EngineError::io("write", &self.to, e))?;
        for (link, target) in &self.links {
            std::os::unix::fs::symlink(target, link)
                .map_err(|e| EngineError::io("link", link, e))?;
        }
        Ok(())
    }
}
