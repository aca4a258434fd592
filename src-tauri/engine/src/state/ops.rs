//! The engine's write operations of this issue, as functions both binaries call:
//! `clean-state`, `cleanup`, `recover`, `migrate` and `migrate --from`. Each returns a
//! report for the caller to show; none prints.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::state::fsops::read_regular;
use crate::state::lifecycle::AnyDeployment;
use crate::state::lock::LockWait;
use crate::state::migrate::{self, import_k0rdent};
use crate::state::model::{
    DeploymentRecord, DeploymentStatus, EventKind, NewEvent, RunOutcome, RunRecord, SCHEMA_VERSION,
    StateFile,
};
use crate::state::store::{
    Loaded, MAX_STATE_BYTES, Store, Writer, migration_backup_path, parse_state, read_state_bytes,
    valid_run_id,
};
use crate::timestamp::Timestamp;

/// A deployment archived by `clean-state` (`archive/deployments/*.json`).
#[derive(Debug, Serialize, serde::Deserialize)]
pub(crate) struct ArchivedDeployment {
    pub archived_at: Timestamp,
    pub lineage: uuid::Uuid,
    pub serial: u64,
    pub deployment: DeploymentRecord,
    pub current_run: Option<RunRecord>,
}

#[derive(Debug, Serialize)]
pub struct CleanReport {
    /// `None` when there was no progress to archive.
    pub archived_to: Option<PathBuf>,
    pub serial: u64,
}

/// Archives the current deployment's progress into history and clears it. The
/// configuration stays in the state; `inventory.yaml` is not touched.
pub fn clean_state(store: &Store, wait: LockWait, now: Timestamp) -> Result<CleanReport> {
    let mut w = store.open_writer("clean-state", wait, now)?;
    // A step's process that outlived its runner still works on this deployment:
    // clearing it would let the next deploy run the same step beside it.
    w.wait_for_orphans(now)?;
    if let Some((step, pid)) = w.orphaned_step() {
        return Err(EngineError::StepStillRunning { step, pid });
    }
    let state = w.state().clone();
    let d = &state.deployment;
    if d.id.is_none() && d.steps.is_empty() && state.current_run.is_none() {
        w.finish()?;
        return Ok(CleanReport {
            archived_to: None,
            serial: state.serial,
        });
    }
    let archive = ArchivedDeployment {
        archived_at: now,
        lineage: state.lineage,
        serial: state.serial,
        deployment: d.clone(),
        current_run: state.current_run.clone(),
    };
    let dir = store.layout().archive_dir().join("deployments");
    let name = format!(
        "{}-{}.json",
        now.compact(),
        d.id.as_deref()
            .filter(|id| valid_run_id(id))
            .unwrap_or("deployment")
    );
    let path = dir.join(name);
    write_json(store, &dir, &path, &archive)?;
    let deployment =
        AnyDeployment::from_record(d.clone()).map_err(|e| EngineError::Internal(e.to_string()))?;
    let (_, fresh) = deployment.clean();
    let message = format!("progress archived to {}", path.display());
    let serial = w.commit(
        now,
        vec![NewEvent::new(EventKind::StateCleaned, message)],
        |s| {
            s.deployment = fresh.erase().into_record();
            s.current_run = None;
            Ok(())
        },
    )?;
    w.finish()?;
    Ok(CleanReport {
        archived_to: Some(path),
        serial,
    })
}

fn write_json<T: Serialize>(store: &Store, dir: &Path, path: &Path, value: &T) -> Result<()> {
    store
        .fs()
        .create_dir_all(dir)
        .map_err(|e| EngineError::io("create the folder", dir, e))?;
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|e| EngineError::Internal(e.to_string()))?;
    store
        .fs()
        .replace(path, &bytes)
        .map_err(|e| EngineError::io("write", path, e))
}

#[derive(Debug, Serialize)]
pub struct CleanupReport {
    /// Run ids moved to `archive/runs/`.
    pub archived: Vec<String>,
    pub archive_dir: PathBuf,
    /// Run files that could not be read; left where they are.
    pub unreadable: Vec<PathBuf>,
}

/// Moves finished runs that ended more than `older_than_days` ago out of history,
/// into `archive/runs/`. The deployment's latest run always stays.
pub fn cleanup(
    store: &Store,
    older_than_days: u32,
    wait: LockWait,
    now: Timestamp,
) -> Result<CleanupReport> {
    let mut w = store.open_writer("cleanup", wait, now)?;
    let (runs, bad) = store.read_runs()?;
    let cutoff = now.plus_seconds(-(i64::from(older_than_days) * 86_400));
    let current = w.state().current_run.as_ref().map(|r| r.run_id.clone());
    let dir = store.layout().archive_dir().join("runs");
    let mut archived = Vec::new();
    for run in runs {
        let old = run.finished_at.is_some_and(|f| f < cutoff);
        if !old || run.outcome == RunOutcome::Running || Some(&run.run_id) == current.as_ref() {
            continue;
        }
        store
            .fs()
            .create_dir_all(&dir)
            .map_err(|e| EngineError::io("create the folder", &dir, e))?;
        let from = store.layout().run_file(&run.run_id);
        let to = dir.join(format!("{}.json", run.run_id));
        store
            .fs()
            .rename(&from, &to)
            .map_err(|e| EngineError::io("move the run file", &from, e))?;
        archived.push(run.run_id);
    }
    if !archived.is_empty() {
        let message = format!(
            "{} run(s) older than {older_than_days} days moved to {}",
            archived.len(),
            dir.display()
        );
        w.commit(
            now,
            vec![NewEvent::new(EventKind::RunsArchived, message)],
            |_| Ok(()),
        )?;
    }
    w.finish()?;
    Ok(CleanupReport {
        archived,
        archive_dir: dir,
        unreadable: bad.into_iter().map(|(p, _)| p).collect(),
    })
}

/// Where `recover` takes the good state from.
#[derive(Debug, Clone)]
pub enum RecoverSource {
    Backup,
    File(PathBuf),
    /// A copy held elsewhere, such as the desktop app's browser copy; `origin`
    /// names it in messages and events.
    Document {
        bytes: Vec<u8>,
        origin: String,
    },
}

#[derive(Debug, Serialize)]
pub struct RecoverReport {
    pub restored_from: PathBuf,
    /// Where the unreadable file was moved (`None` if there was no state file).
    pub moved_aside: Option<PathBuf>,
    /// Where the journal of the replaced state was moved, if it had one.
    pub journal_moved_aside: Option<PathBuf>,
    pub serial: u64,
}

/// Replaces an unreadable (or missing) state with a good copy, after moving the
/// unreadable file aside. Refuses when the state is readable. Never deletes.
pub fn recover(
    store: &Store,
    source: RecoverSource,
    wait: LockWait,
    now: Timestamp,
) -> Result<RecoverReport> {
    let guard = store.lock("recover", wait, now)?;
    let layout = store.layout().clone();
    let state_path = layout.state_file();
    let fs = store.fs();
    let exists = std::fs::symlink_metadata(&state_path).is_ok();
    let readable = match store.load(now) {
        Ok(loaded) => loaded.is_some(),
        Err(EngineError::Unreadable { .. } | EngineError::NewerSchema { .. }) => false,
        Err(e) => return Err(e),
    };
    if readable {
        return Err(EngineError::Usage(format!(
            "the state file {} is readable: there is nothing to recover (to start over, use `thinkube-deploy clean-state`)",
            state_path.display()
        )));
    }
    let journal_path = layout.journal_file();
    let journal_exists = std::fs::symlink_metadata(&journal_path).is_ok();
    // When only the journal cannot be read, the state file itself is the last good
    // copy (newer than the backup).
    let state_alone = matches!(source, RecoverSource::Backup)
        && journal_exists
        && read_state_bytes(fs, &state_path)
            .ok()
            .flatten()
            .is_some_and(|b| parse_state(&b, &state_path, now, uuid::Uuid::new_v4()).is_ok());
    let (source_path, document) = match source {
        RecoverSource::Backup if state_alone => (state_path.clone(), None),
        RecoverSource::Backup => (layout.backup_file(), None),
        RecoverSource::File(p) => (p, None),
        RecoverSource::Document { bytes, origin } => (PathBuf::from(origin), Some(bytes)),
    };
    let cannot_serve = |reason: String| EngineError::Unreadable {
        path: source_path.clone(),
        reason: format!("{reason}. It cannot serve to recover either; nothing was changed"),
    };
    let read = match document {
        Some(bytes) if bytes.len() as u64 > MAX_STATE_BYTES => {
            return Err(cannot_serve(format!(
                "it is {} bytes; a state file this program writes stays far below {MAX_STATE_BYTES} bytes, so this is not one",
                bytes.len()
            )));
        }
        Some(bytes) => Some(bytes),
        // Read as the state itself is read: a regular file within the state's size
        // limit, so what is installed is what the next command can read.
        None => read_regular(&source_path, MAX_STATE_BYTES).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => {
                cannot_serve(e.to_string())
            }
            _ => EngineError::io("read", &source_path, e),
        })?,
    };
    let Some(source_bytes) = read else {
        return Err(EngineError::Usage(format!(
            "there is no copy to recover from at {}; nothing was changed. Give another file with `recover --from PATH`, or see docs/troubleshooting.md",
            source_path.display()
        )));
    };
    parse_state(&source_bytes, &source_path, now, uuid::Uuid::new_v4()).map_err(|e| match e {
        EngineError::Unreadable { reason, .. } => cannot_serve(reason),
        other => other,
    })?;
    // The serial must never go back: take the highest one the unreadable file or
    // the backup still shows (a zeroed state shows none; the backup is the state
    // one commit before the last).
    let seen = |p: &Path| fs.read(p).ok().flatten().and_then(|b| scan_serial(&b));
    let floor = seen(&state_path)
        .into_iter()
        .chain(seen(&journal_path))
        .chain(seen(&layout.backup_file()).map(|s| s.saturating_add(1)))
        .max()
        .unwrap_or(0);
    // The journal belongs to the state being replaced: replayed over another copy
    // it would not follow it.
    let journal_moved_aside = match journal_exists {
        false => None,
        true => {
            let aside = unique_path(
                &layout.root,
                &format!("deployment-state.journal.unreadable-{}", now.compact()),
            );
            fs.rename(&journal_path, &aside)
                .map_err(|e| EngineError::io("move the journal aside from", &journal_path, e))?;
            Some(aside)
        }
    };
    let moved_aside = match exists && !state_alone {
        false => None,
        true => {
            let aside = unique_path(
                &layout.root,
                &format!("deployment-state.json.unreadable-{}", now.compact()),
            );
            fs.rename(&state_path, &aside).map_err(|e| {
                EngineError::io("move the unreadable state aside from", &state_path, e)
            })?;
            Some(aside)
        }
    };
    fs.replace(&state_path, &source_bytes)
        .map_err(|e| EngineError::io("write", &state_path, e))?;
    let mut w = Writer::open(store.clone(), guard, now)?;
    let message = format!(
        "state restored from {}{}",
        source_path.display(),
        moved_aside
            .iter()
            .map(|p| format!("; the unreadable file was moved to {}", p.display()))
            .chain(
                journal_moved_aside
                    .iter()
                    .map(|p| format!("; its journal was moved to {}", p.display()))
            )
            .collect::<String>()
    );
    let serial = w.commit(
        now,
        vec![NewEvent::new(EventKind::StateRecovered, message)],
        |s| {
            s.serial = s.serial.max(floor);
            Ok(())
        },
    )?;
    w.finish()?;
    Ok(RecoverReport {
        restored_from: source_path,
        moved_aside,
        journal_moved_aside,
        serial,
    })
}

/// The largest `"serial": N` in a damaged file's text (best effort).
fn scan_serial(bytes: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(bytes);
    let mut best = None;
    let mut rest = text.as_ref();
    while let Some(i) = rest.find("\"serial\"") {
        rest = &rest[i + 8..];
        let after = rest.trim_start().strip_prefix(':').map(str::trim_start);
        if let Some(n) = after.and_then(|a| {
            let digits: String = a.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().ok()
        }) {
            best = best.max(Some(n));
        }
    }
    best
}

fn unique_path(dir: &Path, name: &str) -> PathBuf {
    let mut path = dir.join(name);
    let mut n = 2;
    while path.exists() {
        path = dir.join(format!("{name}-{n}"));
        n += 1;
    }
    path
}

/// What `migrate` did or would do.
#[derive(Debug, Serialize)]
pub struct MigrateReport {
    pub dry_run: bool,
    /// `None` when there was nothing to convert.
    pub from: Option<String>,
    pub to_schema_version: u32,
    /// Where the original is (or would be) kept.
    pub backup: Option<PathBuf>,
    pub status: Option<DeploymentStatus>,
    pub steps: usize,
    pub notes: Vec<String>,
    /// Peers whose WireGuard private keys stay in the imported file.
    pub private_keys_left_in_source: Vec<String>,
    /// The converted state (with `--dry-run --json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<StateFile>,
    pub message: String,
}

/// Converts the state file of this environment to the current format now.
pub(crate) fn migrate_in_place(
    store: &Store,
    dry_run: bool,
    wait: LockWait,
    now: Timestamp,
) -> Result<MigrateReport> {
    let layout = store.layout();
    let report = |loaded: Option<&Loaded>, message: String| {
        let converted = loaded.and_then(|l| l.converted_from.clone());
        MigrateReport {
            dry_run,
            from: converted.as_ref().map(|c| c.describe()),
            to_schema_version: SCHEMA_VERSION,
            backup: converted
                .as_ref()
                .map(|c| migration_backup_path(layout, c.from_version)),
            status: loaded.map(|l| l.state.deployment.status),
            steps: loaded.map_or(0, |l| l.state.deployment.steps.len()),
            notes: loaded
                .and_then(|l| l.state.deployment.migrated_from.as_ref())
                .map(|m| m.notes.clone())
                .unwrap_or_default(),
            private_keys_left_in_source: Vec::new(),
            state: if dry_run {
                loaded.map(|l| l.state.clone())
            } else {
                None
            },
            message,
        }
    };
    let loaded = store.load(now)?;
    let Some(loaded) = loaded else {
        return Ok(report(
            None,
            format!(
                "there is no state file at {}; nothing to migrate",
                layout.state_file().display()
            ),
        ));
    };
    let Some(converted) = loaded.converted_from.clone() else {
        return Ok(report(
            Some(&loaded),
            format!("the state is already at schema version {SCHEMA_VERSION}; nothing to do"),
        ));
    };
    if dry_run {
        let message = format!(
            "would convert {} from {} to schema version {SCHEMA_VERSION}, keeping the original as {}; nothing was written",
            layout.state_file().display(),
            converted.describe(),
            migration_backup_path(layout, converted.from_version).display()
        );
        return Ok(report(Some(&loaded), message));
    }
    let mut w = store.open_writer("migrate", wait, now)?;
    if w.converted_from().is_some() {
        w.commit(now, Vec::new(), |_| Ok(()))?;
    }
    let written = Loaded {
        state: w.state().clone(),
        converted_from: Some(converted.clone()),
    };
    w.finish()?;
    let message = format!(
        "converted {} from {} to schema version {SCHEMA_VERSION}; the original is kept as {}",
        layout.state_file().display(),
        converted.describe(),
        migration_backup_path(layout, converted.from_version).display()
    );
    Ok(report(Some(&written), message))
}

/// Files larger than this are not state files.
const MAX_IMPORT_BYTES: usize = 16 * 1024 * 1024;

/// Imports another tool's state file (a k0rdent-azure-setup `deployment-state.yaml`,
/// or the earlier installer's v2 or queue JSON) as this environment's deployment.
/// Refuses when a deployment is already here.
pub fn import(
    store: &Store,
    path: &Path,
    dry_run: bool,
    wait: LockWait,
    now: Timestamp,
) -> Result<MigrateReport> {
    let bad = |reason: String| EngineError::BadImport {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = match crate::state::fsops::read_regular(path, MAX_IMPORT_BYTES as u64) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            return Err(EngineError::io(
                "read",
                path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
            ) =>
        {
            return Err(bad(format!(
                "{e}; it is too large or not a file, so not a state file"
            )));
        }
        Err(e) => return Err(EngineError::io("read", path, e)),
    };
    let text = String::from_utf8(bytes).map_err(|_| bad("it is not UTF-8 text".into()))?;
    let shown = path.display().to_string();
    let (deployment, facts, keys_left, format) = match serde_json::from_str::<serde_json::Value>(
        &text,
    ) {
        Ok(value) => {
            let (value, converted) =
                migrate::upgrade(value, now, uuid::Uuid::new_v4()).map_err(bad)?;
            let Some(converted) = converted else {
                return Err(bad("it is already a thinkube-deploy state; to use it, run `thinkube-deploy recover --from PATH` instead".into()));
            };
            let state: StateFile = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
            let mut d = state.deployment;
            if let Some(m) = d.migrated_from.as_mut() {
                m.source_path = Some(shown.clone());
            }
            (d, state.facts, Vec::new(), converted.format)
        }
        Err(_) => {
            let mut k = import_k0rdent(&text, &shown, now).map_err(bad)?;
            // The scripts' checkout is where the file lives: k0rdent-azure-setup
            // writes `<checkout>/state/deployment-state.yaml`, so the plan's
            // `k0rdent_root` is known when that folder holds the scripts.
            if let Some(root) = k0rdent_checkout_of(path) {
                k.deployment
                    .configuration
                    .vars
                    .entry("k0rdent_root".into())
                    .or_insert(root);
            }
            (
                k.deployment,
                k.facts,
                k.peers_with_private_keys,
                "k0rdent-azure",
            )
        }
    };
    AnyDeployment::from_record(deployment.clone())
        .map_err(|e| bad(format!("it contradicts itself: {e}")))?;
    let notes = deployment
        .migrated_from
        .as_ref()
        .map(|m| m.notes.clone())
        .unwrap_or_default();
    let mut report = MigrateReport {
        dry_run,
        from: Some(format!("{format} file {shown}")),
        to_schema_version: SCHEMA_VERSION,
        backup: None,
        status: Some(deployment.status),
        steps: deployment.steps.len(),
        notes,
        private_keys_left_in_source: keys_left,
        state: None,
        message: String::new(),
    };
    if dry_run {
        report.message = format!(
            "would import deployment {} ({} steps, {}) from {shown}; nothing was written",
            deployment.id.as_deref().unwrap_or("-"),
            deployment.steps.len(),
            deployment.status.as_str()
        );
        let mut preview = StateFile::new(uuid::Uuid::nil(), now);
        preview.deployment = deployment;
        preview.facts = facts;
        report.state = Some(preview);
        return Ok(report);
    }
    let mut w = store.open_writer("migrate", wait, now)?;
    let here = &w.state().deployment;
    if here.id.is_some() || !here.steps.is_empty() {
        return Err(EngineError::Usage(format!(
            "there is already a deployment in environment `{}` ({}); run `thinkube-deploy clean-state` first (it archives it into history), or import into another environment with --env NAME",
            store.layout().env,
            here.status.as_str()
        )));
    }
    let message = format!(
        "imported deployment {} from {shown} ({format})",
        deployment.id.as_deref().unwrap_or("-")
    );
    let id = deployment.id.clone();
    let status = deployment.status;
    w.commit(
        now,
        vec![NewEvent::new(EventKind::StateImported, message)],
        |s| {
            s.deployment = deployment;
            for fact in facts.infrastructure {
                s.facts.infrastructure.retain(|f| f.key != fact.key);
                s.facts.infrastructure.push(fact);
            }
            for fact in facts.runtime {
                s.facts
                    .runtime
                    .retain(|f| !(f.host == fact.host && f.kind == fact.kind));
                s.facts.runtime.push(fact);
            }
            Ok(())
        },
    )?;
    w.finish()?;
    report.message = format!(
        "imported deployment {} ({} steps, {}) from {shown}",
        id.as_deref().unwrap_or("-"),
        report.steps,
        status.as_str()
    );
    Ok(report)
}

/// Asks the process running a deployment in this environment to stop (SIGTERM):
/// its running step ends as interrupted. Returns who was asked, or `None` when no
/// deployment is running. Refuses when the holder runs something else.
pub fn request_cancel(store: &Store) -> Result<Option<crate::state::lock::LockHolder>> {
    let Some(holder) = store.lock_holder() else {
        return Ok(None);
    };
    if !matches!(holder.operation.as_str(), "deploy" | "resume" | "retry") {
        return Err(EngineError::Usage(format!(
            "pid {} is running `{}`, not a deployment; there is nothing to cancel",
            holder.pid, holder.operation
        )));
    }
    crate::state::lock::signal_process(holder.pid, libc::SIGTERM);
    Ok(Some(holder))
}

/// The k0rdent-azure-setup checkout a state file at `<checkout>/state/NAME` belongs
/// to, when that folder is one (its `deploy-k0rdent.sh` and `bin/` scripts).
fn k0rdent_checkout_of(file: &Path) -> Option<String> {
    let state_dir = std::fs::canonicalize(file).ok()?.parent()?.to_path_buf();
    let root = state_dir.parent()?;
    let is_checkout = state_dir.file_name()? == "state"
        && root.join("deploy-k0rdent.sh").is_file()
        && root.join("bin").is_dir();
    is_checkout.then(|| root.to_str().map(str::to_string))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_serial_finds_the_largest_serial_in_damaged_text() {
        assert_eq!(
            scan_serial(br#"{"serial": 41, "x": {"serial":7}"#),
            Some(41)
        );
        assert_eq!(scan_serial(b"\x00\x01garbage"), None);
        assert_eq!(scan_serial(br#"{"serial": "#), None);
    }
}
