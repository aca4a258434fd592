//! The state as the window sees it: the `status --json` view, and the state document
//! itself for the window's browser copy (it never holds a secret).

use serde::Serialize;
use thinkube_engine::report::status::{self, StatusView};
use thinkube_engine::state::store::Store;
use thinkube_engine::timestamp::Timestamp;
use ts_rs::TS;

use crate::error::AppError;

#[derive(Debug, Serialize, TS)]
#[ts(export)]
pub struct Snapshot {
    /// `null` when the state file cannot be read (see `problem`).
    pub status: Option<StatusView>,
    /// The state file's content (schema 3), for the browser copy; `null` when there
    /// is none or it cannot be read.
    #[ts(type = "unknown")]
    pub document: Option<serde_json::Value>,
    /// Why the state cannot be read.
    pub problem: Option<AppError>,
    /// A deployment started from this window is running.
    pub running_here: bool,
    /// The window title for this state (the page mirrors it in `document.title`).
    pub title: String,
}

pub fn take(store: &Store, running_here: bool) -> Snapshot {
    let now = Timestamp::now();
    let mut snapshot = match store.load(now) {
        Ok(loaded) => {
            let holder = store.lock_holder();
            let view = status::view(store.layout(), loaded.as_ref(), holder.as_ref(), now);
            Snapshot {
                status: Some(view),
                document: loaded.and_then(|l| serde_json::to_value(&l.state).ok()),
                problem: None,
                running_here,
                title: String::new(),
            }
        }
        Err(e) => Snapshot {
            status: None,
            document: None,
            problem: Some(e.into()),
            running_here,
            title: String::new(),
        },
    };
    snapshot.title = title(&snapshot);
    snapshot
}

/// The window title: the installer's name, with the progress while there is some.
pub fn title(snapshot: &Snapshot) -> String {
    const NAME: &str = "Thinkube Installer";
    let Some(v) = &snapshot.status else {
        return NAME.to_string();
    };
    let p = &v.progress;
    if v.deployment.id.is_none() || p.total == 0 {
        return NAME.to_string();
    }
    let status = v.deployment.status.as_str().replace('_', " ");
    format!(
        "{NAME} — {}% ({} of {} steps, {status})",
        p.percentage, p.completed, p.total
    )
}
