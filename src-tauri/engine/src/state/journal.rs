//! The journal: the commits made since the state file was last written whole.
//!
//! A run commits two or three times per step. Writing the whole state each time costs
//! what the state weighs (2.7 MB at 5,000 steps), so a run's step commits append one
//! line each to `deployment-state.journal` instead: the step records and run entries
//! that changed, the new serial and the commit's events, made durable (fsync) before
//! the commit returns. The state file is written whole (the journal compacted into
//! it, then removed) at the first commit of every operation, whenever the journal has
//! grown to the state file's size, and when the operation ends, so a state at rest is
//! one whole file.
//!
//! Every reader replays the journal over the state file ([`replay`]): lines whose
//! serial the state file already has are skipped (a compaction cut short before it
//! removed the journal), the others must follow it one by one. Each line is durable
//! before the next is written, with one exception: the pid of a step's process (it
//! matters only while the machine is up) is written without its own fsync, and the
//! step's next line, fsynced, covers it (`covers_from`: it holds that commit's
//! changes too). So what a power loss can leave damaged is the journal's end (lines
//! never acknowledged durable: ignored) and a line that the next one covers
//! (skipped). Any other line that cannot be read makes the state unreadable (exit 4;
//! `recover` moves the journal aside).

use std::path::Path;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{EngineError, Result};
use crate::state::model::{Event, RunStep, StateFile, StepRecord};
use crate::timestamp::Timestamp;

/// One commit's change, as one line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub lineage: Uuid,
    pub serial: u64,
    pub updated_at: Timestamp,
    pub last_event_seq: u64,
    pub recent_events: Vec<Event>,
    /// The deployment's steps that changed, by index.
    pub steps: Vec<(usize, StepRecord)>,
    /// The current run's id, its number of attempted steps, and the attempted steps
    /// that changed or were added, by index.
    pub run_id: String,
    pub run_steps_len: usize,
    pub run_steps: Vec<(usize, RunStep)>,
    /// Set when the line before this one was written without its own fsync: the
    /// serial of that line's commit, whose changes this entry holds too (its steps
    /// and run entries as they are now, its events before this commit's). A reader
    /// that could not read the line before applies this one over the state before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covers_from: Option<u64>,
}

impl Entry {
    /// The entry as a journal line (ending in a newline).
    pub(crate) fn line(&self) -> Result<Vec<u8>> {
        let mut line = serde_json::to_vec(self)
            .map_err(|e| EngineError::Internal(format!("cannot encode a journal entry: {e}")))?;
        line.push(b'\n');
        Ok(line)
    }

    /// Applies the entry to `state`, which must be the state it follows.
    pub(crate) fn apply(self, state: &mut StateFile) -> std::result::Result<(), String> {
        let steps = &mut state.deployment.steps;
        for (i, step) in self.steps {
            match steps.get_mut(i) {
                Some(s) if s.id == step.id => *s = step,
                _ => {
                    return Err(format!(
                        "its serial {} changes a step the state does not have at {i} ({})",
                        self.serial, step.id
                    ));
                }
            }
        }
        let run = match state.current_run.as_mut() {
            Some(run) if run.run_id == self.run_id => run,
            _ => {
                return Err(format!(
                    "its serial {} belongs to run {}, which is not the state's current run",
                    self.serial, self.run_id
                ));
            }
        };
        for (i, entry) in self.run_steps {
            let attempted = &mut run.steps_attempted;
            match i.cmp(&attempted.len()) {
                std::cmp::Ordering::Less => attempted[i] = entry,
                std::cmp::Ordering::Equal => attempted.push(entry),
                std::cmp::Ordering::Greater => {
                    return Err(format!(
                        "its serial {} skips attempted steps of run {}",
                        self.serial, self.run_id
                    ));
                }
            }
        }
        if run.steps_attempted.len() != self.run_steps_len {
            return Err(format!(
                "its serial {} leaves run {} with {} attempted steps, not {}",
                self.serial,
                self.run_id,
                run.steps_attempted.len(),
                self.run_steps_len
            ));
        }
        state.serial = self.serial;
        state.updated_at = self.updated_at;
        state.last_event_seq = self.last_event_seq;
        state.recent_events = self.recent_events;
        Ok(())
    }
}

/// What [`replay`] did: the entries applied, and the bytes it is done with (up to
/// the end of the last line applied or skipped; a follower reads on from there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Replayed {
    pub applied: usize,
    pub consumed: usize,
}

/// Replays the journal's `bytes` over `state` (read from the state file, or the
/// state a follower has replayed so far, `bytes` then being what followed).
pub(crate) fn replay(state: &mut StateFile, bytes: &[u8], path: &Path) -> Result<Replayed> {
    let unreadable = |reason: String| EngineError::Unreadable {
        path: path.to_path_buf(),
        reason: format!(
            "{reason}; `thinkube-deploy recover --from-backup` moves it aside and keeps the state file"
        ),
    };
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut done = Replayed {
        applied: 0,
        consumed: 0,
    };
    // The first unreadable line since the last readable one: skipped if the next
    // entry covers it, ignored at the end (never acknowledged durable).
    let mut damaged: Option<(usize, serde_json::Error)> = None;
    let mut end = 0;
    for (n, line) in bytes[..complete]
        .split_inclusive(|b| *b == b'\n')
        .enumerate()
    {
        end += line.len();
        let text = &line[..line.len() - 1];
        if text.is_empty() {
            if damaged.is_none() {
                done.consumed = end;
            }
            continue;
        }
        let entry = match serde_json::from_slice::<Entry>(text) {
            Ok(entry) => entry,
            Err(e) => {
                damaged.get_or_insert((n + 1, e));
                continue;
            }
        };
        // Another lineage's journal was left by a removal a crash undid; lines the
        // state already has were left by a compaction cut short.
        if entry.lineage != state.lineage || entry.serial <= state.serial {
            damaged = None;
            done.consumed = end;
            continue;
        }
        let from = entry.covers_from.unwrap_or(entry.serial);
        if let Some((line, e)) = damaged.take()
            && (entry.covers_from.is_none() || from > state.serial + 1)
        {
            return Err(unreadable(format!(
                "its line {line} is not a journal entry ({e})"
            )));
        }
        if from > state.serial + 1 || from > entry.serial {
            return Err(unreadable(format!(
                "its line {} has serial {} but the state file is at {}: the journal does not follow the state file",
                n + 1,
                entry.serial,
                state.serial
            )));
        }
        entry.apply(state).map_err(unreadable)?;
        done.applied += 1;
        done.consumed = end;
    }
    if done.applied > 0 {
        crate::state::lifecycle::check_invariants(&state.deployment)
            .map_err(|e| unreadable(format!("with it the state contradicts itself: {e}")))?;
    }
    Ok(done)
}
