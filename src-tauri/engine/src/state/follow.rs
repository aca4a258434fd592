//! Following a run's state as it is committed, from outside the writer: the app's
//! window shows its run ten times a second, and reading and parsing the whole state
//! each time would cost what the state weighs (2.7 MB at 5,000 steps).

use crate::error::Result;
use crate::state::journal;
use crate::state::store::{self, FileId, Loaded, MAX_STATE_BYTES, Store};
use crate::timestamp::Timestamp;

/// Reads the state as [`Store::load`] does (no lock, the journal replayed), then on
/// each read only the journal lines appended since, as long as the state file is the
/// one it read. A writer that writes the state whole (at its start and end, when it
/// compacts the journal) replaces the file, and the follower then reads it whole
/// again. Whatever it cannot follow (a journal cut back, replaced, unreadable) it
/// reads whole, so it always answers what `load` would.
pub struct Follower {
    store: Store,
    followed: Option<Followed>,
}

struct Followed {
    loaded: Loaded,
    /// `None` when the file could not be identified (the next read is whole).
    state_id: Option<FileId>,
    /// The journal bytes replayed, and the journal they were read from (its inode).
    consumed: u64,
    journal_ino: Option<u64>,
}

impl Follower {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            followed: None,
        }
    }

    /// The state now; `Ok(None)` when there is none yet.
    pub fn read(&mut self, now: Timestamp) -> Result<Option<&Loaded>> {
        let followed = self.followed.take().and_then(|f| read_on(&self.store, f));
        self.followed = match followed {
            Some(f) => Some(f),
            None => self.read_whole(now)?,
        };
        Ok(self.followed.as_ref().map(|f| &f.loaded))
    }

    fn read_whole(&self, now: Timestamp) -> Result<Option<Followed>> {
        let layout = self.store.layout();
        let journal_ino = journal_file(&layout.journal_file()).map(|(ino, _)| ino);
        let Some(current) = store::read_current(self.store.fs(), layout, now)? else {
            return Ok(None);
        };
        Ok(Some(Followed {
            loaded: current.loaded,
            state_id: current.state_id,
            consumed: current.journal_consumed,
            journal_ino,
        }))
    }
}

/// The journal's inode and size, if it exists.
fn journal_file(path: &std::path::Path) -> Option<(u64, u64)> {
    store::file_id(path).map(|(ino, len, ..)| (ino, len))
}

/// `followed` with the journal lines appended since replayed, or `None` when it
/// cannot be followed so (read whole instead).
fn read_on(store: &Store, mut f: Followed) -> Option<Followed> {
    let layout = store.layout();
    let path = layout.state_file();
    if f.state_id.is_none() || store::file_id(&path) != f.state_id {
        return None;
    }
    let journal_path = layout.journal_file();
    match journal_file(&journal_path) {
        // Removed: only a writer that wrote the state whole removes it.
        None if f.consumed > 0 => return None,
        None => {}
        Some((ino, len)) => {
            let same = f.journal_ino.is_none_or(|i| i == ino) || f.consumed == 0;
            if !same || len < f.consumed || len > MAX_STATE_BYTES {
                return None;
            }
            if len > f.consumed {
                let bytes = store.fs().read_from(&journal_path, f.consumed).ok()??;
                let replayed = journal::replay(&mut f.loaded.state, &bytes, &journal_path).ok()?;
                f.consumed += replayed.consumed as u64;
                f.journal_ino = Some(ino);
            }
        }
    }
    // What was read counts only if the state file is still the one followed.
    (store::file_id(&path) == f.state_id).then_some(f)
}
