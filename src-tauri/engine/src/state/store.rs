//! The durable store of one environment.
//!
//! - Readers (`Store::load`) parse the state file (migrating older formats in memory)
//!   and never take or wait for the lock.
//! - A writer (`Store::open_writer`) holds the lock for its whole operation; each
//!   `commit` replaces the state file atomically and durably, keeps the previous
//!   version as `deployment-state.json.bak`, then appends the commit's events to
//!   `events.jsonl`.
//! - A state that cannot be read is never written over: loading fails with exit 4 and
//!   only `recover` (which moves the bad file aside) replaces it.
//!
//! Commit cost does not grow with history: finished runs live in `runs/`, events in
//! an append-only file, and the state file keeps only the latest run and the last
//! commit's events.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use crate::error::{EngineError, Result};
use crate::paths::Layout;
use crate::state::bounds;
use crate::state::fsops::{FileOps, RealFs, TEMP_PREFIX};
use crate::state::journal;
use crate::state::lifecycle::AnyDeployment;
use crate::state::lock::{self, Identity, LockGuard, LockHolder, LockWait};
use crate::state::migrate::{self, Converted};
use crate::state::model::{
    AttemptOutcome, DeploymentRecord, DeploymentStatus, Event, EventKind, NewEvent, ProcessRef,
    RunOutcome, RunRecord, SCHEMA_VERSION, StateFile, StepRecord, StepStatus,
};
use crate::state::shared::Shared;
use crate::timestamp::Timestamp;

/// A state as loaded, with where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub state: StateFile,
    /// Set when the file was in an older format and was converted in memory.
    pub converted_from: Option<Converted>,
}

/// Called once when a writer starts waiting for another process's lock.
pub(crate) type LockWaitNotice = Arc<dyn Fn(Option<&LockHolder>) + Send + Sync>;

/// One environment's store.
#[derive(Clone)]
pub struct Store {
    layout: Layout,
    fs: Arc<dyn FileOps>,
    identity: Identity,
    on_lock_wait: Option<LockWaitNotice>,
    /// Whether this process was asked to stop (a signal): a writer waiting for the
    /// lock gives up then.
    stop_requested: Option<StopRequested>,
    /// The shared backend holding this environment's state and lock, if any
    /// (`state::shared`; `None`: this home's files are the state).
    shared: Option<Arc<Shared>>,
}

/// Tells a waiting writer that the process was asked to stop.
pub(crate) type StopRequested = Arc<dyn Fn() -> bool + Send + Sync>;

impl Store {
    pub fn new(layout: Layout, identity: Identity) -> Self {
        Self::with_fs(layout, Arc::new(RealFs), identity)
    }

    /// A store over other file operations (the reliability tests' simulated disk).
    pub fn with_fs(layout: Layout, fs: Arc<dyn FileOps>, identity: Identity) -> Self {
        Self {
            layout,
            fs,
            identity,
            on_lock_wait: None,
            stop_requested: None,
            shared: None,
        }
    }

    /// Keeps the state and lock in `shared` too (the local files are its working copy).
    pub fn with_shared(mut self, shared: Option<Shared>) -> Self {
        self.shared = shared.map(Arc::new);
        self
    }

    pub fn shared(&self) -> Option<&Shared> {
        self.shared.as_deref()
    }

    /// A writer waiting for the lock gives up when `stopped` says so.
    pub(crate) fn with_stop_requested(mut self, stopped: StopRequested) -> Self {
        self.stop_requested = Some(stopped);
        self
    }

    /// Tells `notice` when a writer starts waiting for the lock (`--lock-timeout`).
    pub(crate) fn with_lock_wait_notice(mut self, notice: LockWaitNotice) -> Self {
        self.on_lock_wait = Some(notice);
        self
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn fs(&self) -> &dyn FileOps {
        self.fs.as_ref()
    }

    /// Reads the state without the lock. `Ok(None)` when there is no state file yet.
    /// With a shared backend, the shared state (read without its lock), unless this
    /// home holds a newer one of the same deployment (commits the shared state never
    /// received: the next writer uploads them) or the shared one has none.
    pub fn load(&self, now: Timestamp) -> Result<Option<Loaded>> {
        if let Some(shared) = &self.shared {
            let theirs = match shared.read_state()? {
                None => None,
                Some((bytes, _)) => Some(parse_state(
                    &bytes,
                    Path::new(shared.url()),
                    now,
                    Uuid::new_v4(),
                )?),
            };
            let ours = read_current(self.fs.as_ref(), &self.layout, now)
                .ok()
                .flatten()
                .map(|c| c.loaded);
            return Ok(match (theirs, ours) {
                (Some(t), Some(o))
                    if o.state.lineage == t.state.lineage && o.state.serial > t.state.serial =>
                {
                    Some(o)
                }
                (None, ours) => ours,
                (theirs, _) => theirs,
            });
        }
        Ok(read_current(self.fs.as_ref(), &self.layout, now)?.map(|c| c.loaded))
    }

    /// The live holder of the writer lock, if any (never takes the lock).
    pub fn lock_holder(&self) -> Option<LockHolder> {
        lock::live_holder(&self.layout, self.fs.as_ref())
    }

    /// Takes the writer lock without reading the state (for `recover`).
    pub fn lock(&self, operation: &str, wait: LockWait, now: Timestamp) -> Result<LockGuard> {
        let notice = |holder: Option<&LockHolder>| {
            if let Some(f) = &self.on_lock_wait {
                f(holder);
            }
        };
        let stopped = || self.stop_requested.as_ref().is_some_and(|f| f());
        let mut guard = lock::acquire_notifying(
            &self.layout,
            self.fs.clone(),
            operation,
            wait,
            &self.identity,
            now,
            &lock::Waiting {
                on_wait: &notice,
                stopped: &stopped,
            },
        )?;
        if let Some(shared) = &self.shared {
            guard.shared = Some(shared.acquire(&guard.holder, wait, &stopped)?);
        }
        Ok(guard)
    }

    /// Takes the writer lock and loads the state for changing it. On load, a running
    /// step whose process is gone is recorded as interrupted, and the audit trail is
    /// repaired if a crash cut it short.
    pub fn open_writer(&self, operation: &str, wait: LockWait, now: Timestamp) -> Result<Writer> {
        let guard = self.lock(operation, wait, now)?;
        Writer::open(self.clone(), guard, now)
    }

    fn shared_cache_file(&self) -> PathBuf {
        self.layout.root.join("shared-state.cache.json")
    }

    /// Keeps the shared state last read (best effort: a cache that cannot be
    /// written is only older next time). Not durable: only `status` reads it.
    pub(crate) fn write_shared_cache(&self, bytes: &[u8], now: Timestamp) {
        let (Some(shared), Ok(state)) = (
            self.shared.as_ref(),
            serde_json::from_slice::<serde_json::Value>(bytes),
        ) else {
            return;
        };
        let value = serde_json::json!({"backend": shared.url(), "read_at": now, "state": state});
        let path = self.shared_cache_file();
        let _ = self.fs.create_dir_all(&self.layout.root);
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let _ = self.fs.remove(&tmp);
        if self
            .fs
            .write_new(&tmp, value.to_string().as_bytes())
            .is_ok()
            && self.fs.rename_entry(&tmp, &path).is_err()
        {
            let _ = self.fs.remove(&tmp);
        }
    }

    /// The cached shared state of this backend, and when it was read.
    pub(crate) fn read_shared_cache(&self) -> Option<(Vec<u8>, Timestamp)> {
        let shared = self.shared.as_ref()?;
        let bytes = crate::state::fsops::read_regular(&self.shared_cache_file(), MAX_STATE_BYTES)
            .ok()??;
        let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        if value["backend"] != shared.url() {
            return None;
        }
        let read_at = Timestamp::parse(value["read_at"].as_str()?).ok()?;
        Some((serde_json::to_vec(&value["state"]).ok()?, read_at))
    }

    /// This home's own state, whatever the backend.
    pub(crate) fn load_local(&self, now: Timestamp) -> Result<Option<Loaded>> {
        Ok(read_current(self.fs.as_ref(), &self.layout, now)?.map(|c| c.loaded))
    }

    /// Finished runs in `runs/`, oldest first, and the files that could not be read.
    pub(crate) fn read_runs(&self) -> Result<(Vec<RunRecord>, Vec<UnreadableFile>)> {
        let dir = self.layout.runs_dir();
        let mut runs = Vec::new();
        let mut bad = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((runs, bad)),
            Err(e) => return Err(EngineError::io("list", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| EngineError::io("list", &dir, e))?;
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match read_json::<RunRecord>(self.fs.as_ref(), &path) {
                // A run's id names its file: an id that is not this file's name (a
                // hand edit, `../deployment-state`) would point commands elsewhere.
                Ok(Some(run))
                    if valid_run_id(&run.run_id)
                        && path.file_stem().is_some_and(|stem| *stem == *run.run_id) =>
                {
                    runs.push(run)
                }
                Ok(Some(run)) => bad.push((
                    path,
                    format!(
                        "its run_id {:?} is not the file's name (letters, digits, `-` and `_`); the file was left alone",
                        quoted_id(&run.run_id)
                    ),
                )),
                Ok(None) => {}
                Err(reason) => bad.push((path, reason)),
            }
        }
        runs.sort_by(|a, b| (a.started_at, &a.run_id).cmp(&(b.started_at, &b.run_id)));
        Ok((runs, bad))
    }

    /// One run: from `runs/` or, while it has not finished, from the state file.
    pub(crate) fn read_run(
        &self,
        run_id: &str,
        state: Option<&StateFile>,
    ) -> Result<Option<RunRecord>> {
        if let Some(run) = state
            .and_then(|s| s.current_run.as_ref())
            .filter(|r| r.run_id == run_id)
        {
            return Ok(Some(run.clone()));
        }
        if !valid_run_id(run_id) {
            return Ok(None);
        }
        let path = self.layout.run_file(run_id);
        read_json(self.fs.as_ref(), &path).map_err(|reason| EngineError::RunUnreadable {
            path: path.clone(),
            reason,
        })
    }

    /// The audit trail. A torn last line (a crash mid-append) is skipped and reported.
    pub fn read_events(&self) -> Result<EventsRead> {
        let path = self.layout.events_file();
        let bytes = self
            .fs
            .read(&path)
            .map_err(|e| EngineError::io("read", &path, e))?
            .unwrap_or_default();
        Ok(parse_events(&bytes))
    }
}

/// Larger state files are refused before they are read (a 1,000-step deployment's
/// state is about 260 KB; history lives elsewhere).
pub(crate) const MAX_STATE_BYTES: u64 = 64 * 1024 * 1024;

/// Reads the state file's bytes, refusing a symbolic link: the store replaces the
/// file by rename, which would silently turn a link into a file, so a link is
/// reported instead of followed.
pub(crate) fn read_state_bytes(fs: &dyn FileOps, path: &Path) -> Result<Option<Vec<u8>>> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            return Err(EngineError::Unreadable {
                path: path.to_path_buf(),
                reason: format!(
                    "it is a symbolic link (to {target}); the installer keeps its state in a regular file of its own. Replace the link with the file it points to if that is your state"
                ),
            });
        }
        if !meta.is_file() {
            return Err(EngineError::Unreadable {
                path: path.to_path_buf(),
                reason: format!(
                    "it is {}, not a regular file",
                    crate::state::fsops::kind_name(meta.file_type())
                ),
            });
        }
        if meta.len() > MAX_STATE_BYTES {
            return Err(EngineError::Unreadable {
                path: path.to_path_buf(),
                reason: format!(
                    "it is {} bytes; a state file this program writes stays far below {MAX_STATE_BYTES} bytes, so this is not one",
                    meta.len()
                ),
            });
        }
    }
    fs.read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => EngineError::StateNotPermitted {
            path: path.to_path_buf(),
        },
        _ => EngineError::io("read", path, e),
    })
}

/// The state as every reader sees it: the state file with the journal replayed.
pub(crate) struct Current {
    pub loaded: Loaded,
    /// The state file's bytes (kept as the original when it was in an older format).
    pub bytes: Vec<u8>,
    /// The state file's and the journal's sizes.
    pub state_len: u64,
    pub journal_len: u64,
    /// The state file read, and the journal's bytes replayed (see `Replayed`).
    pub state_id: Option<FileId>,
    pub journal_consumed: u64,
}

/// Which file a path names, and at what size and modification time: a writer that
/// writes the state whole replaces the file (a rename: a new inode).
pub(crate) type FileId = (u64, u64, i64, i64);

pub(crate) fn file_id(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

pub(crate) fn read_current(
    fs: &dyn FileOps,
    layout: &Layout,
    now: Timestamp,
) -> Result<Option<Current>> {
    let path = layout.state_file();
    let journal_path = layout.journal_file();
    // A reader takes no lock: a writer may write the state whole (a rename: a new
    // file) and remove or restart the journal between the reader's two reads. What
    // was read counts only if the state file is still the one read.
    let identity = || file_id(&path);
    let mut tries = 0;
    loop {
        let before = identity();
        let read = read_state_bytes(fs, &path).and_then(|bytes| {
            let Some(bytes) = bytes else {
                return Ok(None);
            };
            let mut loaded = parse_state(&bytes, &path, now, Uuid::new_v4())?;
            let journal = read_state_bytes(fs, &journal_path)?.unwrap_or_default();
            let journal_consumed = if journal.is_empty() {
                0
            } else {
                journal::replay(&mut loaded.state, &journal, &journal_path)?.consumed as u64
            };
            Ok(Some(Current {
                loaded,
                state_len: bytes.len() as u64,
                journal_len: journal.len() as u64,
                bytes,
                state_id: before,
                journal_consumed,
            }))
        });
        tries += 1;
        if before == identity() || tries >= 5 {
            return read;
        }
    }
}

/// A file that could not be read, and why.
pub(crate) type UnreadableFile = (PathBuf, String);

/// An id quoted in a message, cut to a readable length.
fn quoted_id(id: &str) -> String {
    id.chars().take(120).collect()
}

/// Run ids are generated by us; anything else is refused before it becomes a path.
pub(crate) fn valid_run_id(run_id: &str) -> bool {
    !run_id.is_empty()
        && run_id.len() <= 80
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn read_json<T: serde::de::DeserializeOwned>(
    fs: &dyn FileOps,
    path: &Path,
) -> std::result::Result<Option<T>, String> {
    match fs.read(path) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The events file as read.
#[derive(Debug, Default)]
pub struct EventsRead {
    pub events: Vec<Event>,
    /// Bytes at the end that do not form a complete line (a cut-short append).
    pub torn_tail: usize,
    /// Complete lines that could not be parsed (1-based line numbers).
    pub bad_lines: Vec<usize>,
}

fn parse_events(bytes: &[u8]) -> EventsRead {
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut read = EventsRead {
        torn_tail: bytes.len() - complete,
        ..EventsRead::default()
    };
    for (i, line) in bytes[..complete].split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Event>(line) {
            Ok(event) => read.events.push(event),
            Err(_) => read.bad_lines.push(i + 1),
        }
    }
    read
}

/// Parses and converts a state file's bytes into the current schema, checking the
/// deployment's invariants. `new_lineage` is used only for older formats that have none.
pub fn parse_state(bytes: &[u8], path: &Path, now: Timestamp, new_lineage: Uuid) -> Result<Loaded> {
    let unreadable = |reason: String| EngineError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(unreadable("the file is empty".into()));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        unreadable(format!(
            "it is not valid JSON (line {}, column {}: {})",
            e.line(),
            e.column(),
            json_error_text(&e)
        ))
    })?;
    if let Some(found) = value.get("schema_version").and_then(|v| v.as_u64())
        && found > u64::from(SCHEMA_VERSION)
    {
        return Err(EngineError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let (value, converted_from) = migrate::upgrade(value, now, new_lineage).map_err(unreadable)?;
    let state: StateFile = serde_json::from_value(value)
        .map_err(|e| unreadable(format!("it does not match the state format: {e}")))?;
    if state.schema_version != SCHEMA_VERSION {
        return Err(unreadable(format!(
            "schema_version {} is not one this program knows",
            state.schema_version
        )));
    }
    crate::state::lifecycle::check_invariants(&state.deployment)
        .map_err(|e| unreadable(format!("it contradicts itself: {e}")))?;
    Ok(Loaded {
        state,
        converted_from,
    })
}

/// serde_json's message without its own " at line X column Y" suffix (we print those).
fn json_error_text(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// A writer's session: holds the lock, the current state, and commits changes.
pub struct Writer {
    store: Store,
    _guard: LockGuard,
    state: StateFile,
    /// The original bytes of an older-format file, backed up before the first write.
    original: Option<(Converted, Vec<u8>)>,
    /// Whether events were appended since the last sync.
    events_unsynced: bool,
    /// What opening had to repair, in sentences (shown to the user, and recorded as
    /// an event with the next commit).
    pub repairs: Vec<String>,
    journal: JournalUse,
    /// The last event the shared trail holds (with a shared backend).
    shared_events_seq: u64,
}

/// How this writer uses the journal (see `state::journal`).
#[derive(Debug, Default)]
struct JournalUse {
    /// Whether commits may append to it: not before this writer has written the
    /// state file whole once, nor after an append failed.
    open: bool,
    /// Its size, and the state file's, in bytes.
    len: u64,
    state_len: u64,
    /// The last line, when it was written without its own fsync: the next line
    /// covers it (see `state::journal`).
    unsynced: Option<Unsynced>,
}

/// A journal line written without its own fsync: its commit's serial and the
/// indexes of the steps and run entries it changed.
#[derive(Debug, Clone)]
struct Unsynced {
    serial: u64,
    steps: Vec<usize>,
    run_steps: Vec<usize>,
}

/// The journal is compacted into the state file when it reaches the state file's
/// size, or this, whichever is larger.
const JOURNAL_MIN_BYTES: u64 = 256 * 1024;

/// What a run's commit changed: the deployment and run as they are now, and which
/// of their steps changed (by index). Everything else must be as last committed.
pub(crate) struct StepChange<'a> {
    pub deployment: &'a DeploymentRecord,
    pub steps: &'a [usize],
    pub run: &'a RunRecord,
    pub run_steps: &'a [usize],
    /// Whether the commit must survive a power loss. `false` only for what matters
    /// while the machine stays up (the pid of a step's process, which a power loss
    /// ends too): its line is written before the commit returns, so readers see it
    /// and it survives this process being killed, but it is not fsynced on its own.
    /// The next line is fsynced and holds its changes too (`covers_from`), so a
    /// power loss that damages it while keeping a later line loses nothing.
    pub durable: bool,
}

impl Writer {
    pub(crate) fn open(store: Store, guard: LockGuard, now: Timestamp) -> Result<Self> {
        remove_leftover_temp_files(&store);
        let mut journal = JournalUse::default();
        let current = read_current(store.fs.as_ref(), &store.layout, now)?;
        let local_exists = current.is_some();
        let (state, original) = match current {
            None => (StateFile::new(Uuid::new_v4(), now), None),
            Some(current) => {
                journal.len = current.journal_len;
                journal.state_len = current.state_len;
                let original = current.loaded.converted_from.map(|c| (c, current.bytes));
                (current.loaded.state, original)
            }
        };
        let mut writer = Writer {
            store,
            _guard: guard,
            state,
            original,
            events_unsynced: false,
            repairs: Vec::new(),
            journal,
            shared_events_seq: 0,
        };
        writer.join_shared(local_exists, now)?;
        writer.repair_trail()?;
        writer.interrupt_dead_run(now)?;
        Ok(writer)
    }

    /// Brings this writer's state and the shared one together, under the shared
    /// lock: the shared state is taken when this home has none, or an older one, or
    /// one the shared state never received beside a newer one (same serial, other
    /// content: a commit whose upload failed while another writer went on); this
    /// home's is uploaded when the shared one has none or is older in the same
    /// lineage (a commit whose upload failed, nobody writing since). Another lineage
    /// on each side is refused: they are different deployments.
    fn join_shared(&mut self, local_exists: bool, now: Timestamp) -> Result<()> {
        let Some(lease) = self._guard.shared.as_mut() else {
            return Ok(());
        };
        let url = self
            .store
            .shared
            .as_ref()
            .map_or("", |s| s.url())
            .to_string();
        let Some(bytes) = lease.read()? else {
            return if local_exists {
                self.push_shared()
            } else {
                Ok(())
            };
        };
        let path = std::path::PathBuf::from(&url);
        let theirs = parse_state(&bytes, &path, now, Uuid::new_v4())?.state;
        self.shared_events_seq = theirs.last_event_seq;
        let ours = &self.state;
        let take = if !local_exists {
            true
        } else if theirs.lineage != ours.lineage {
            return Err(EngineError::Usage(format!(
                "the shared state at {url} is another deployment (lineage {}) than this home's (lineage {}, {}): nothing was changed. Use another --env for one of them, or move this home's state aside to take the shared one",
                theirs.lineage,
                ours.lineage,
                self.store.layout.state_file().display()
            )));
        } else {
            theirs.serial > ours.serial || (theirs.serial == ours.serial && theirs != *ours)
        };
        if take {
            self.write_whole(&theirs)?;
            self.state = theirs;
            self.original = None;
            Ok(())
        } else if ours.serial > theirs.serial {
            self.push_shared()
        } else {
            Ok(())
        }
    }

    /// Uploads the committed state to the shared backend, when there is one, only
    /// over the version this writer last read or wrote there.
    fn push_shared(&mut self) -> Result<()> {
        if self._guard.shared.is_none() {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&self.state)
            .map_err(|e| EngineError::Internal(format!("cannot encode the state: {e}")))?;
        // The events the shared trail lacks: this commit's, and those of commits it
        // never received (read back from this home's trail).
        let after = self.shared_events_seq;
        let recent = &self.state.recent_events;
        let mut events: Vec<Event> = if recent.first().is_some_and(|e| e.seq <= after + 1) {
            Vec::new()
        } else {
            self.store
                .read_events()
                .map(|r| r.events)
                .unwrap_or_default()
                .into_iter()
                .filter(|e| e.seq > after && recent.first().is_none_or(|r| e.seq < r.seq))
                .collect()
        };
        events.extend(recent.iter().filter(|e| e.seq > after).cloned());
        let lines = events_lines(&events);
        if let Some(lease) = self._guard.shared.as_mut() {
            lease.write(bytes, lines)?;
        }
        self.shared_events_seq = self.state.last_event_seq;
        Ok(())
    }

    pub fn state(&self) -> &StateFile {
        &self.state
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn layout(&self) -> &Layout {
        &self.store.layout
    }

    /// Whether the state was converted from an older format and not yet written.
    pub fn converted_from(&self) -> Option<&Converted> {
        self.original.as_ref().map(|(c, _)| c)
    }

    /// Applies `change` to a copy of the state and commits it durably with `events`.
    /// Returns the new serial. On any error nothing is changed, on disk or here.
    pub fn commit<F>(&mut self, now: Timestamp, events: Vec<NewEvent>, change: F) -> Result<u64>
    where
        F: FnOnce(&mut StateFile) -> Result<()>,
    {
        let mut next = self.state.clone();
        change(&mut next)?;
        self.commit_next(now, events, next)
    }

    /// Commits the state with `deployment` and `run` in place of the stored ones,
    /// and `change` applied to the rest. Unlike [`Writer::commit`], the parts being
    /// replaced are not copied first: a run's commits copy its records once, not twice.
    pub(crate) fn commit_replacing<F>(
        &mut self,
        now: Timestamp,
        events: Vec<NewEvent>,
        deployment: DeploymentRecord,
        run: Option<RunRecord>,
        change: F,
    ) -> Result<u64>
    where
        F: FnOnce(&mut StateFile) -> Result<()>,
    {
        let s = &self.state;
        let mut next = StateFile {
            schema_version: s.schema_version,
            lineage: s.lineage,
            serial: s.serial,
            created_at: s.created_at,
            updated_at: s.updated_at,
            deployment,
            current_run: run,
            facts: s.facts.clone(),
            last_event_seq: s.last_event_seq,
            recent_events: Vec::new(),
        };
        change(&mut next)?;
        self.commit_next(now, events, next)
    }

    /// Checks `next`, numbers it and its events, and makes it durable.
    fn commit_next(
        &mut self,
        now: Timestamp,
        events: Vec<NewEvent>,
        mut next: StateFile,
    ) -> Result<u64> {
        crate::state::lifecycle::check_invariants(&next.deployment)
            .map_err(|e| EngineError::Internal(format!("the change would break the state: {e}")))?;
        let mut events = events;
        if let Some((converted, _)) = &self.original {
            let backup = migration_backup_path(&self.store.layout, converted.from_version);
            events.insert(
                0,
                NewEvent::new(
                    EventKind::StateMigrated,
                    format!(
                        "converted from {} to schema version {SCHEMA_VERSION}; the original is kept as {}",
                        converted.describe(),
                        backup.display()
                    ),
                ),
            );
        }
        if !self.repairs.is_empty() {
            let message = self.repairs.join("; ");
            events.insert(0, NewEvent::new(EventKind::TrailRepaired, message));
        }
        // A change may raise the serial (recovery never lets it go back), never lower it.
        next.serial = self.next_serial(next.serial)?;
        next.updated_at = now;
        next.recent_events = self.number_events(now, events)?;
        next.last_event_seq = self.state.last_event_seq + next.recent_events.len() as u64;
        self.write_whole(&next)?;
        tracing::debug!(serial = next.serial, "committed");
        // The state is durable; now the trail. A crash here is repaired on the next
        // open from `recent_events`.
        let after = self.state.last_event_seq;
        self.state = next;
        self.original = None;
        self.repairs.clear();
        self.append_events(after)?;
        self.push_shared()?;
        Ok(self.state.serial)
    }

    /// Commits a run's change of its steps (see [`StepChange`]): one journal line
    /// instead of the whole state, when the journal can take it; otherwise the whole
    /// state, as [`Writer::commit_replacing`] does. Same guarantees either way: on
    /// any error nothing is changed, on disk or here; on success it is durable.
    pub(crate) fn commit_steps(
        &mut self,
        now: Timestamp,
        events: Vec<NewEvent>,
        change: StepChange<'_>,
    ) -> Result<u64> {
        if !self.journal_fits(&change) {
            return self.commit_replacing(
                now,
                events,
                change.deployment.clone(),
                Some(change.run.clone()),
                |_| Ok(()),
            );
        }
        let entry = self.journal_entry(now, events, &change)?;
        let changed: Vec<&StepRecord> = change
            .steps
            .iter()
            .filter_map(|i| change.deployment.steps.get(*i))
            .collect();
        crate::state::lifecycle::check_changed(change.deployment, &changed)
            .map_err(|e| EngineError::Internal(format!("the change would break the state: {e}")))?;
        let line = entry.line()?;
        let unsynced = Unsynced {
            serial: entry.serial,
            steps: entry.steps.iter().map(|(i, _)| *i).collect(),
            run_steps: entry.run_steps.iter().map(|(i, _)| *i).collect(),
        };
        if cfg!(debug_assertions) {
            // Tests run debug builds: prove the line says everything that changed.
            let mut replayed = self.state.clone();
            entry
                .clone()
                .apply(&mut replayed)
                .map_err(EngineError::Internal)?;
            if replayed.deployment != *change.deployment
                || replayed.current_run.as_ref() != Some(change.run)
            {
                return Err(EngineError::Internal(
                    "a journal entry does not hold every change of its commit".into(),
                ));
            }
        }
        // A line is written unsynced only when the next is sure to be synced and so
        // to cover it: never two in a row, never the line that creates the file.
        let sync = change.durable || self.journal.unsynced.is_some() || self.journal.len == 0;
        self.append_journal(&line, sync)?;
        self.journal.unsynced = (!sync).then_some(unsynced);
        let (serial, after) = (entry.serial, self.state.last_event_seq);
        entry
            .apply(&mut self.state)
            .map_err(EngineError::Internal)?;
        tracing::debug!(serial, "committed to the journal");
        self.append_events(after)?;
        // What need not survive a power loss (a step's pid) matters only on this
        // machine: the shared state gets it with the next commit.
        if change.durable {
            self.push_shared()?;
        }
        Ok(serial)
    }

    /// Whether `change` can be committed as a journal line. Not when the journal is
    /// not open to this writer yet or has grown to the state's size, nor when the
    /// change reaches beyond the steps it names.
    fn journal_fits(&self, change: &StepChange<'_>) -> bool {
        let j = &self.journal;
        let Some(stored_run) = self.state.current_run.as_ref() else {
            return false;
        };
        let (run, deployment) = (change.run, change.deployment);
        let stored_len = stored_run.steps_attempted.len();
        j.open
            && self.original.is_none()
            && self.repairs.is_empty()
            && j.len < j.state_len.max(JOURNAL_MIN_BYTES)
            && deployment.steps.len() == self.state.deployment.steps.len()
            && run.steps_attempted.len() >= stored_len
            && (stored_len..run.steps_attempted.len()).all(|i| change.run_steps.contains(&i))
            && change.steps.iter().all(|i| *i < deployment.steps.len())
            && change
                .run_steps
                .iter()
                .all(|i| *i < run.steps_attempted.len())
            && same_deployment_head(deployment, &self.state.deployment)
            && same_run_head(run, stored_run)
    }

    /// The journal line for `change` (which [`Writer::journal_fits`]).
    fn journal_entry(
        &self,
        now: Timestamp,
        events: Vec<NewEvent>,
        change: &StepChange<'_>,
    ) -> Result<journal::Entry> {
        let (run, deployment) = (change.run, change.deployment);
        let mut recent_events = self.number_events(now, events)?;
        let mut indexes = change.steps.to_vec();
        let mut run_indexes = change.run_steps.to_vec();
        // The line before was not synced: this one holds its changes and events too.
        let covers_from = self.journal.unsynced.as_ref().map(|u| {
            indexes.extend(&u.steps);
            run_indexes.extend(&u.run_steps);
            u.serial
        });
        if covers_from.is_some() {
            let mut both = self.state.recent_events.clone();
            both.append(&mut recent_events);
            recent_events = both;
        }
        indexes.sort_unstable();
        indexes.dedup();
        run_indexes.sort_unstable();
        run_indexes.dedup();
        Ok(journal::Entry {
            lineage: self.state.lineage,
            serial: self.next_serial(self.state.serial)?,
            updated_at: now,
            last_event_seq: recent_events
                .last()
                .map_or(self.state.last_event_seq, |e| e.seq),
            recent_events,
            covers_from,
            steps: indexes
                .into_iter()
                .map(|i| (i, deployment.steps[i].clone()))
                .collect(),
            run_id: run.run_id.clone(),
            run_steps_len: run.steps_attempted.len(),
            run_steps: run_indexes
                .into_iter()
                .map(|i| (i, run.steps_attempted[i].clone()))
                .collect(),
        })
    }

    /// Appends one line to the journal, durably when `sync`. A line is on the disk
    /// before the next is written, so a power loss can damage only the journal's end,
    /// except a line written unsynced: a power loss could keep a later line and not
    /// it (a file system may write pages in any order), which is why the next line
    /// must cover it (`covers_from`) and so is always synced. A failed append is cut
    /// back off (best effort) and closes the journal to this writer: its next commit
    /// writes the state whole, which removes the journal.
    fn append_journal(&mut self, line: &[u8], sync: bool) -> Result<()> {
        let fs = self.store.fs.as_ref();
        let path = self.store.layout.journal_file();
        let result = fs
            .append(&path, line)
            .and_then(|()| if sync { fs.sync_file(&path) } else { Ok(()) })
            .and_then(|()| {
                // A new file's name must be durable too.
                if self.journal.len == 0 {
                    fs.sync_dir(&self.store.layout.root)
                } else {
                    Ok(())
                }
            });
        if let Err(e) = result {
            let _ = fs.set_len(&path, self.journal.len);
            self.journal.open = false;
            return Err(EngineError::io("append to", &path, e));
        }
        self.journal.len += line.len() as u64;
        Ok(())
    }

    /// The serial after the current one (or after `proposed`, when a change raised it).
    fn next_serial(&self, proposed: u64) -> Result<u64> {
        proposed
            .max(self.state.serial)
            .checked_add(1)
            .ok_or_else(|| self.exhausted("serial"))
    }

    fn exhausted(&self, what: &str) -> EngineError {
        EngineError::Unreadable {
            path: self.store.layout.state_file(),
            reason: format!(
                "its {what} is at the largest number a state can hold (it was edited by hand?)"
            ),
        }
    }

    /// `events` numbered after the last committed one, at `now`.
    fn number_events(&self, now: Timestamp, events: Vec<NewEvent>) -> Result<Vec<Event>> {
        let last = self.state.last_event_seq;
        if last.checked_add(events.len() as u64 + 1).is_none() {
            return Err(self.exhausted("last event number"));
        }
        Ok(events
            .into_iter()
            .enumerate()
            .map(|(i, e)| Event {
                seq: last + 1 + i as u64,
                at: now,
                run_id: e.run_id,
                kind: e.kind,
                step: e.step,
                message: bounds::stored(&e.message, bounds::MESSAGE_BYTES),
            })
            .collect())
    }

    /// Writes `next` as the state file, durably, keeping the previous one as the
    /// backup (and the original of a converted format), then removes the journal,
    /// which the state file now holds.
    fn write_whole(&mut self, next: &StateFile) -> Result<()> {
        let bytes = serde_json::to_vec(next)
            .map_err(|e| EngineError::Internal(format!("cannot encode the state: {e}")))?;
        let layout = &self.store.layout;
        let fs = self.store.fs.as_ref();
        fs.create_dir_all(&layout.root)
            .map_err(|e| EngineError::io("create the folder", &layout.root, e))?;
        if let Some((converted, original)) = &self.original {
            let backup = migration_backup_path(layout, converted.from_version);
            if fs.read(&backup).ok().flatten().is_none() {
                fs.replace(&backup, original)
                    .map_err(|e| EngineError::io("back up the original state to", &backup, e))?;
            }
        }
        let path = layout.state_file();
        // The backup is the state as last committed: the state file itself (a link,
        // no copy), or with the journal replayed, the state in memory.
        if self.journal.len == 0 {
            fs.snapshot(&path, &layout.backup_file())
                .map_err(|e| EngineError::io("keep a backup of", &path, e))?;
        } else {
            let previous = serde_json::to_vec(&self.state)
                .map_err(|e| EngineError::Internal(format!("cannot encode the state: {e}")))?;
            let backup = layout.backup_file();
            fs.replace(&backup, &previous)
                .map_err(|e| EngineError::io("keep a backup of the state in", &backup, e))?;
        }
        fs.replace(&path, &bytes)
            .map_err(|e| EngineError::io("write", &path, e))?;
        self.journal.state_len = bytes.len() as u64;
        // What the journal held is in the state file now. Should the removal fail
        // (or a crash undo it), readers skip the lines by their serial; this writer
        // stops appending until a removal succeeds.
        let journal = layout.journal_file();
        match fs.remove(&journal) {
            Ok(()) => {
                self.journal = JournalUse {
                    open: true,
                    len: 0,
                    state_len: self.journal.state_len,
                    unsynced: None,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %journal.display(), "cannot remove the journal");
                self.journal.open = false;
                self.journal.unsynced = None;
            }
        }
        Ok(())
    }

    /// Appends the last commit's events to the audit trail (synced once per
    /// operation: a crash before that is repaired from `recent_events`).
    /// Only the events numbered after `after`: a commit that covers an unsynced
    /// line holds that line's events too, which are in the trail already.
    fn append_events(&mut self, after: u64) -> Result<()> {
        let new = self.state.recent_events.iter().position(|e| e.seq > after);
        let lines = events_lines(new.map_or(&[][..], |i| &self.state.recent_events[i..]));
        if !lines.is_empty() {
            let events_path = self.store.layout.events_file();
            self.store
                .fs
                .append(&events_path, &lines)
                .map_err(|e| EngineError::io("append to", &events_path, e))?;
            self.events_unsynced = true;
        }
        Ok(())
    }

    /// Makes the appended events durable (once per operation, not per commit).
    pub(crate) fn sync_events(&mut self) -> Result<()> {
        if self.events_unsynced {
            let path = self.store.layout.events_file();
            self.store
                .fs
                .sync(&path)
                .map_err(|e| EngineError::io("sync", &path, e))?;
            self.events_unsynced = false;
        }
        Ok(())
    }

    /// Writes a finished run to `runs/<run_id>.json`, durably.
    pub fn write_run_file(&self, run: &RunRecord) -> Result<PathBuf> {
        let layout = &self.store.layout;
        let dir = layout.runs_dir();
        self.store
            .fs
            .create_dir_all(&dir)
            .map_err(|e| EngineError::io("create the folder", &dir, e))?;
        if !valid_run_id(&run.run_id) {
            return Err(EngineError::Unreadable {
                path: layout.state_file(),
                reason: format!(
                    "its current run's id {:?} is not a run id (letters, digits, `-` and `_`)",
                    quoted_id(&run.run_id)
                ),
            });
        }
        let path = layout.run_file(&run.run_id);
        let bytes = serde_json::to_vec_pretty(run)
            .map_err(|e| EngineError::Internal(format!("cannot encode a run: {e}")))?;
        self.store
            .fs
            .replace(&path, &bytes)
            .map_err(|e| EngineError::io("write", &path, e))?;
        if let Some(lease) = &self._guard.shared {
            lease.put_run(&run.run_id, bytes)?;
        }
        Ok(path)
    }

    /// Copies the runs one side lacks to the other, between this home's `runs/` and
    /// the shared backend's (`upload`: to it, else from it). Returns how many.
    pub(crate) fn copy_runs(&self, upload: bool) -> Result<usize> {
        let Some(lease) = &self._guard.shared else {
            return Ok(0);
        };
        let layout = &self.store.layout;
        let mut copied = 0;
        if upload {
            let theirs = lease.run_ids()?;
            for run in self.store.read_runs()?.0 {
                if !theirs.contains(&run.run_id) {
                    let bytes = serde_json::to_vec_pretty(&run)
                        .map_err(|e| EngineError::Internal(format!("cannot encode a run: {e}")))?;
                    lease.put_run(&run.run_id, bytes)?;
                    copied += 1;
                }
            }
            return Ok(copied);
        }
        let dir = layout.runs_dir();
        self.store
            .fs
            .create_dir_all(&dir)
            .map_err(|e| EngineError::io("create the folder", &dir, e))?;
        for id in lease.run_ids()? {
            let path = layout.run_file(&id);
            if !valid_run_id(&id) || self.store.fs.exists(&path) {
                continue;
            }
            if let Some(bytes) = lease.get_run(&id)? {
                self.store
                    .fs
                    .replace(&path, &bytes)
                    .map_err(|e| EngineError::io("write", &path, e))?;
                copied += 1;
            }
        }
        Ok(copied)
    }

    /// Ends the session: writes the state whole if the journal holds commits (a
    /// state at rest is one file), syncs the trail, then releases the lock.
    pub fn finish(mut self) -> Result<()> {
        if self.journal.len > 0 {
            let state = self.state.clone();
            self.write_whole(&state)?;
        }
        self.sync_events()
    }

    /// Brings `events.jsonl` in line with the state: drops a torn last line and
    /// re-appends the last commit's events if the crash came before they were written.
    fn repair_trail(&mut self) -> Result<()> {
        let fs = self.store.fs.as_ref();
        let path = self.store.layout.events_file();
        let Some(bytes) = fs
            .read(&path)
            .map_err(|e| EngineError::io("read", &path, e))?
        else {
            if !self.state.recent_events.is_empty() {
                self.append_missing(0)?;
            }
            return Ok(());
        };
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if complete < bytes.len() {
            fs.truncate(&path, complete as u64)
                .map_err(|e| EngineError::io("truncate the torn last line of", &path, e))?;
            self.repairs.push(format!(
                "dropped a torn last line of {} ({} bytes; a write was cut short)",
                path.display(),
                bytes.len() - complete
            ));
        }
        let last_seq = bytes[..complete]
            .split(|b| *b == b'\n')
            .rev()
            .find_map(|line| serde_json::from_slice::<Event>(line).ok())
            .map_or(0, |e| e.seq);
        if last_seq < self.state.last_event_seq {
            self.append_missing(last_seq)?;
        } else if last_seq > self.state.last_event_seq {
            // The state is older than the trail (restored from a backup): number new
            // events after the trail's last so sequence numbers stay unique.
            self.state.last_event_seq = last_seq;
            self.state.recent_events.clear();
        }
        Ok(())
    }

    fn append_missing(&mut self, last_seq: u64) -> Result<()> {
        let missing: Vec<Event> = self
            .state
            .recent_events
            .iter()
            .filter(|e| e.seq > last_seq)
            .cloned()
            .collect();
        let first = self.state.recent_events.first().map_or(u64::MAX, |e| e.seq);
        if first > last_seq + 1 {
            self.repairs.push(format!(
                "events {}..{} of the audit trail were lost (a power loss before they reached the disk)",
                last_seq + 1,
                first.min(self.state.last_event_seq + 1) - 1
            ));
        }
        if !missing.is_empty() {
            let path = self.store.layout.events_file();
            self.store
                .fs
                .append(&path, &events_lines(&missing))
                .map_err(|e| EngineError::io("append to", &path, e))?;
            self.events_unsynced = true;
            self.repairs.push(format!(
                "wrote {} event(s) of the last commit that a crash kept out of the audit trail",
                missing.len()
            ));
        }
        Ok(())
    }

    /// Waits up to [`ORPHAN_GRACE`] for the processes of steps still recorded
    /// running (left by a runner that died; they get SIGTERM when it dies) to exit,
    /// then records the ones that did as interrupted (at `now`, when the operation
    /// that found them began). Those still alive stay running: see
    /// [`Writer::orphaned_step`].
    pub(crate) fn wait_for_orphans(&mut self, now: Timestamp) -> Result<()> {
        let deadline = std::time::Instant::now() + ORPHAN_GRACE;
        while self.orphaned_step().is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.interrupt_dead_run(now)
    }

    /// A step still recorded running whose process is alive, with its pid: it
    /// still works on the deployment, so nothing may change it.
    pub(crate) fn orphaned_step(&self) -> Option<(String, u32)> {
        self.state.deployment.steps.iter().find_map(|s| {
            let a = s.attempts.last()?;
            let p = a.process.filter(|_| a.outcome == AttemptOutcome::Running)?;
            lock::process_alive(p).then(|| (s.id.clone(), p.pid))
        })
    }

    /// A run left `running` by a process that died: record it (and its running
    /// steps) as interrupted, and keep the run in history.
    pub(crate) fn interrupt_dead_run(&mut self, now: Timestamp) -> Result<()> {
        let Some(r) = reconcile_dead(&self.state, lock::process_alive) else {
            return Ok(());
        };
        if let Some(run) = &r.dead_run {
            self.write_run_file(run)?;
        }
        let run_id = r.state.current_run.as_ref().map(|run| run.run_id.clone());
        let mut events: Vec<NewEvent> = r
            .interrupted_steps
            .iter()
            .map(|s| {
                NewEvent::new(
                    EventKind::StepInterrupted,
                    "the process running this step is gone; the step runs again on resume",
                )
                .step(s)
                .run(run_id.as_deref())
            })
            .collect();
        if let Some(run) = &r.dead_run {
            events.push(
                NewEvent::new(
                    EventKind::RunFinished,
                    format!(
                        "run ended without recording its end (its process is gone): {}",
                        run.outcome.as_str()
                    ),
                )
                .run(run_id.as_deref()),
            );
        }
        let Reconciled { state, .. } = r;
        self.commit(now, events, |s| {
            s.deployment = state.deployment;
            s.current_run = state.current_run;
            Ok(())
        })?;
        Ok(())
    }
}

/// How long a writer waits for a step's process left by a runner that died.
const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What `reconcile_dead` found.
#[derive(Debug)]
pub(crate) struct Reconciled {
    pub state: StateFile,
    pub interrupted_steps: Vec<String>,
    /// The run that was still marked running, now ended.
    pub dead_run: Option<RunRecord>,
}

/// The state as it is once dead processes are accounted for: a running step whose
/// process is not `alive` (or unknown) is interrupted; a deployment with nothing
/// left running settles; a run still marked running ends with the outcome its
/// deployment settled on. `None` when nothing changes.
///
/// When the process died is not known, only that it was after the last commit it
/// made: that moment (`updated_at`) is recorded as the end of what it left running,
/// never the time of looking, so every reader and the next writer tell the same
/// story however often they look.
///
/// Writers apply it on open (they hold the lock, so no earlier writer lives);
/// `status` and `history` apply it to what they show when nobody holds the lock.
pub(crate) fn reconcile_dead(
    state: &StateFile,
    alive: impl Fn(ProcessRef) -> bool,
) -> Option<Reconciled> {
    let now = state.updated_at;
    let mut next = state.clone();
    let mut interrupted_steps = Vec::new();
    if let Ok(AnyDeployment::InProgress(mut d)) =
        AnyDeployment::from_record(next.deployment.clone())
    {
        interrupted_steps = d.interrupt_dead_steps(|p| p.is_none_or(|p| !alive(p)), now);
        next.deployment = if d.has_running() {
            d.erase().into_record()
        } else {
            d.settle(now).erase().into_record()
        };
    }
    let still_running = next
        .deployment
        .steps
        .iter()
        .any(|s| s.status == StepStatus::Running);
    let outcome = match next.deployment.status {
        DeploymentStatus::Completed => RunOutcome::Success,
        DeploymentStatus::Failed => RunOutcome::Failed,
        _ => RunOutcome::Interrupted,
    };
    let mut dead_run = None;
    if let Some(run) = next.current_run.as_mut()
        && run.outcome == RunOutcome::Running
        && !still_running
    {
        run.outcome = outcome;
        run.finished_at = Some(now);
        for attempt in &mut run.steps_attempted {
            if attempt.outcome == AttemptOutcome::Running {
                attempt.outcome = AttemptOutcome::Interrupted;
                attempt.finished_at = Some(now);
            }
        }
        dead_run = Some(run.clone());
    }
    if next.deployment == state.deployment && dead_run.is_none() {
        return None;
    }
    Some(Reconciled {
        state: next,
        interrupted_steps,
        dead_run,
    })
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.sync_events();
    }
}

fn events_lines(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        // Serializing our own event type cannot fail.
        if let Ok(line) = serde_json::to_vec(event) {
            out.extend_from_slice(&line);
            out.push(b'\n');
        }
    }
    out
}

/// Where the original of a converted state is kept: `deployment-state.json.schema-N.bak`.
pub(crate) fn migration_backup_path(layout: &Layout, from_version: u32) -> PathBuf {
    layout
        .root
        .join(format!("deployment-state.json.schema-{from_version}.bak"))
}

/// Temporary files of writes cut short by a crash. Only a lock holder calls this.
fn remove_leftover_temp_files(store: &Store) {
    for dir in [store.layout.root.clone(), store.layout.runs_dir()] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let _ = store.fs.remove(&entry.path());
            }
        }
    }
}

/// A new run id: UTC timestamp plus a random suffix.
pub fn new_run_id(now: Timestamp) -> String {
    let suffix = Uuid::new_v4().simple().to_string();
    format!("{}-{}", now.compact(), &suffix[..6])
}

/// Whether two deployments agree in everything but their steps.
fn same_deployment_head(a: &DeploymentRecord, b: &DeploymentRecord) -> bool {
    // Destructured so that a new field cannot be forgotten here.
    let DeploymentRecord {
        id,
        status,
        plan_id,
        plan_source,
        plan_digest,
        configuration,
        phases,
        steps: _,
        started_at,
        finished_at,
        restart,
        migrated_from,
    } = a;
    *id == b.id
        && *status == b.status
        && *plan_id == b.plan_id
        && *plan_source == b.plan_source
        && *plan_digest == b.plan_digest
        && *started_at == b.started_at
        && *finished_at == b.finished_at
        && *restart == b.restart
        && *migrated_from == b.migrated_from
        && *phases == b.phases
        && *configuration == b.configuration
}

/// Whether two runs agree in everything but their attempted steps.
fn same_run_head(a: &RunRecord, b: &RunRecord) -> bool {
    let RunRecord {
        run_id,
        kind,
        deployment_id,
        started_at,
        finished_at,
        outcome,
        plan_id,
        plan_digest,
        configuration,
        enabled_flags,
        steps_attempted: _,
        program,
    } = a;
    *run_id == b.run_id
        && *kind == b.kind
        && *deployment_id == b.deployment_id
        && *started_at == b.started_at
        && *finished_at == b.finished_at
        && *outcome == b.outcome
        && *plan_id == b.plan_id
        && *plan_digest == b.plan_digest
        && *enabled_flags == b.enabled_flags
        && *program == b.program
        && *configuration == b.configuration
}
