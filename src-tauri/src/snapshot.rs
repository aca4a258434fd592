//! The state as the window sees it: the `status --json` view, and the state document
//! itself for the window's browser copy (it never holds a secret).

use std::collections::HashMap;

use serde::Serialize;
use thinkube_engine::report::status::{
    self, DeploymentView, LockView, Progress, RunView, StatusView, StepView,
};
use thinkube_engine::state::store::{Loaded, Store};
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

/// The state as it is now (read whole).
pub fn take(store: &Store, running_here: bool) -> Snapshot {
    let now = Timestamp::now();
    if store.shared().is_some() && !running_here {
        // Shared: what another machine's run committed, and who holds the lock.
        let mut snapshot = match status::shared(store, now) {
            Ok((view, loaded)) => Snapshot {
                status: Some(view),
                document: loaded.and_then(|l| serde_json::to_value(&l.state).ok()),
                problem: None,
                running_here,
                title: String::new(),
            },
            Err(e) => of(store, Err(e.into()), running_here, now),
        };
        snapshot.title = title(&snapshot);
        return snapshot;
    }
    match store.load(now) {
        Ok(loaded) => of(store, Ok(loaded.as_ref()), running_here, now),
        Err(e) => of(store, Err(e.into()), running_here, now),
    }
}

/// The snapshot of a state read at `now` (by `Store::load`, or a `Follower`).
pub fn of(
    store: &Store,
    read: Result<Option<&Loaded>, AppError>,
    running_here: bool,
    now: Timestamp,
) -> Snapshot {
    let mut snapshot = match read {
        Ok(loaded) => {
            let holder = store.lock_holder();
            let mut view = status::view(store.layout(), loaded, holder.as_ref(), now);
            mark_shared(store, &mut view, now);
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
            problem: Some(e),
            running_here,
            title: String::new(),
        },
    };
    snapshot.title = title(&snapshot);
    snapshot
}

/// A run of this window on a shared environment: its own state is the freshest;
/// the view says where it is shared.
fn mark_shared(store: &Store, view: &mut status::StatusView, now: Timestamp) {
    if let Some(shared) = store.shared() {
        view.shared = Some(status::SharedView {
            backend: shared.url().to_string(),
            read_at: now,
            unreachable: None,
            lease_expires_in_seconds: None,
        });
    }
}

/// The window title: the installer's name, with the progress while there is some.
pub fn title(snapshot: &Snapshot) -> String {
    match &snapshot.status {
        Some(v) => title_of(&v.progress, &v.deployment),
        None => NAME.to_string(),
    }
}

const NAME: &str = "Thinkube Installer";

fn title_of(p: &Progress, deployment: &DeploymentView) -> String {
    if deployment.id.is_none() || p.total == 0 {
        return NAME.to_string();
    }
    let status = deployment.status.as_str().replace('_', " ");
    format!(
        "{NAME} — {}% ({} of {} steps, {status})",
        p.percentage, p.completed, p.total
    )
}

/// What changed in the state since the last snapshot or change the page was sent:
/// the deployment's summary, and only the steps whose view changed. During a run
/// this goes after every step change, instead of the whole state (300 steps and
/// the state document, after each of them).
#[derive(Debug, Serialize, TS)]
#[ts(export)]
pub struct StatusChange {
    #[ts(type = "number")]
    pub serial: u64,
    pub deployment: DeploymentView,
    pub progress: Progress,
    pub current_run: Option<RunView>,
    pub lock: LockView,
    /// The steps whose view changed (each whole), in plan order.
    pub steps: Vec<StepView>,
    pub title: String,
}

/// The page's view of the steps, to send only what changed: each step's view as
/// last sent, by id, and the ids in order (a change of the step list needs a whole
/// snapshot).
#[derive(Default)]
pub struct Sent {
    order: Vec<String>,
    steps: HashMap<String, StepView>,
}

/// Either the whole snapshot (the first of a run, when the step list changed, or
/// when the state cannot be read) or the change since `sent`; `sent` then holds
/// what the page has.
pub enum Update {
    Whole(Box<Snapshot>),
    Change(Box<StatusChange>),
}

impl Sent {
    /// Remembers a whole snapshot sent.
    pub fn whole(&mut self, snapshot: &Snapshot) {
        let steps = snapshot.status.as_ref().map_or(&[][..], |v| &v.steps[..]);
        self.order = steps.iter().map(|s| s.id.clone()).collect();
        self.steps = steps.iter().map(|s| (s.id.clone(), s.clone())).collect();
    }

    /// The update to send for the state `read` at `now`.
    pub fn update(
        &mut self,
        store: &Store,
        read: Result<Option<&Loaded>, AppError>,
        running_here: bool,
        now: Timestamp,
    ) -> Update {
        let loaded = match read {
            Ok(Some(loaded)) => loaded,
            other => {
                let snap = of(store, other, running_here, now);
                self.whole(&snap);
                return Update::Whole(Box::new(snap));
            }
        };
        let holder = store.lock_holder();
        let mut view = status::view(store.layout(), Some(loaded), holder.as_ref(), now);
        mark_shared(store, &mut view, now);
        if self.order.len() != view.steps.len()
            || self.order.iter().zip(&view.steps).any(|(a, b)| *a != b.id)
        {
            let mut snap = Snapshot {
                document: serde_json::to_value(&loaded.state).ok(),
                status: Some(view),
                problem: None,
                running_here,
                title: String::new(),
            };
            snap.title = title(&snap);
            self.whole(&snap);
            return Update::Whole(Box::new(snap));
        }
        let mut changed = Vec::new();
        for step in view.steps {
            if self.steps.get(&step.id) != Some(&step) {
                self.steps.insert(step.id.clone(), step.clone());
                changed.push(step);
            }
        }
        let title = title_of(&view.progress, &view.deployment);
        Update::Change(Box::new(StatusChange {
            serial: view.serial,
            deployment: view.deployment,
            progress: view.progress,
            current_run: view.current_run,
            lock: view.lock,
            steps: changed,
            title,
        }))
    }
}
