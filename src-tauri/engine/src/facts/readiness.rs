//! Is this environment ready to deploy? The desktop app's `--skip-config` asks
//! before it shows the Deploy screen: the state can be read, no other process holds
//! the lock, and the inventory exists and is valid. Reads only; never waits.

use serde::Serialize;

use crate::config;
use crate::error::EngineError;
use crate::state::store::Store;
use crate::timestamp::Timestamp;

/// What is not ready.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    State,
    Lock,
    Inventory,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotReady {
    pub part: Part,
    /// What is wrong and what to do.
    pub message: String,
}

/// Everything that stops a deployment from starting now; empty when ready.
pub fn check(store: &Store, now: Timestamp) -> Vec<NotReady> {
    let mut out = Vec::new();
    if let Err(e) = store.load(now) {
        out.push(NotReady {
            part: Part::State,
            message: e.to_string(),
        });
    }
    if let Some(h) = store.lock_holder() {
        out.push(NotReady {
            part: Part::Lock,
            message: format!(
                "pid {} is running `{}` in this environment (since {})",
                h.pid, h.operation, h.since
            ),
        });
    }
    let inventory = store.layout().inventory_file();
    let problem = match config::check_inventory(&inventory) {
        Ok(_) => None,
        Err(EngineError::Usage(m)) if !inventory.exists() => Some(format!(
            "there is no inventory at {}: {m}. Open the configuration and save it to write one",
            inventory.display()
        )),
        Err(e) => Some(e.to_string()),
    };
    if let Some(message) = problem {
        out.push(NotReady {
            part: Part::Inventory,
            message,
        });
    }
    out
}
