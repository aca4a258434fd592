//! Runs a deployment on a background thread and forwards its progress to the window
//! through a channel: steps as they start and finish, the state after each change
//! (with its serial), and log lines in batches, so thousands of lines a second reach
//! the page as a few messages (see `forward`).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tauri::ipc::Channel;
use thinkube_engine::run::deploy::{self, DeployArgs, Ended, Progress};
use thinkube_engine::run::runner::Output;
use thinkube_engine::run::tally::TaskTally;
use thinkube_engine::state::follow::Follower;
use thinkube_engine::state::model::{DeploymentStatus, RunOutcome};
use thinkube_engine::state::store::Store;
use thinkube_engine::timestamp::Timestamp;
use ts_rs::TS;

use crate::error::AppError;
use crate::snapshot::{self, Sent, Snapshot, StatusChange, Update};

/// Shortest time between two messages to the page during a run (and so the longest
/// a line or a step change waits). Fast steps change the state hundreds of times a
/// second and a playbook can print 50,000 lines a second; the page draws ten times.
const FLUSH: Duration = Duration::from_millis(100);

/// What the window hears while a deployment runs, in messages of several events, in
/// order (see `forward`).
#[derive(Debug, Serialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
#[ts(export)]
pub enum RunEvent {
    /// A step started or finished, a retry was scheduled, the run started or ended.
    Progress { progress: Progress },
    /// Output of the running step, in order.
    Log { step: String, lines: Vec<String> },
    /// The running playbook's task and per-host counts, when they changed (at most
    /// once a message).
    Tasks { step: String, tally: TaskTally },
    /// The whole state: the first of a run, its last, and when the step list changed.
    State { snapshot: Box<Snapshot> },
    /// What changed in the state after a step change (only the steps that changed).
    Change { change: StatusChange },
    /// The run is over; the last event of the channel.
    Ended { ended: RunEnded },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum EndKind {
    Completed,
    Failed,
    Interrupted,
    Blocked,
    AwaitingRestart,
    AlreadyCompleted,
    /// The run could not start or stopped on an error (see `error`).
    Error,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct RunEnded {
    pub kind: EndKind,
    /// What happened and what to do next, in a sentence.
    pub message: String,
    pub error: Option<AppError>,
}

impl RunEnded {
    pub(crate) fn from_result(result: Result<Ended, AppError>) -> Self {
        let (kind, message, error) = match result {
            Err(e) => (EndKind::Error, e.message.clone(), Some(e)),
            Ok(Ended::AlreadyCompleted { .. }) => (
                EndKind::AlreadyCompleted,
                "The deployment is already completed; nothing ran.".to_string(),
                None,
            ),
            Ok(Ended::Blocked {
                gate,
                reason,
                phase,
                ..
            }) => (
                EndKind::Blocked,
                format!(
                    "Phase `{phase}` did not start: gate {gate} blocked: {reason}. Fix the cause, then Resume."
                ),
                None,
            ),
            Ok(Ended::Ran(s)) if s.status == DeploymentStatus::AwaitingRestart => (
                EndKind::AwaitingRestart,
                "Restart this machine, then open the installer and Resume.".to_string(),
                None,
            ),
            Ok(Ended::Ran(s)) => match s.outcome {
                RunOutcome::Success => {
                    (EndKind::Completed, "All steps completed.".to_string(), None)
                }
                RunOutcome::Interrupted => (
                    EndKind::Interrupted,
                    "Stopped. The running step was recorded as interrupted; Resume runs it again."
                        .to_string(),
                    None,
                ),
                _ => (
                    EndKind::Failed,
                    "A step failed. Fix the cause, then Retry failed.".to_string(),
                    None,
                ),
            },
        };
        Self {
            kind,
            message,
            error,
        }
    }
}

enum Message {
    Progress(Progress),
    Done(Result<Ended, AppError>),
}

/// Where forwarded events go: the page's channel, a message of events at a time,
/// and the window title.
pub trait Sink: Send + 'static {
    fn send(&self, events: Vec<RunEvent>);
    fn title(&self, title: String);
}

impl Sink for (Channel<Vec<RunEvent>>, Option<tauri::WebviewWindow>) {
    fn send(&self, events: Vec<RunEvent>) {
        let _ = self.0.send(events);
    }
    fn title(&self, title: String) {
        if let Some(w) = &self.1 {
            let _ = w.set_title(&title);
        }
    }
}

/// Starts the run on its own thread; `on_end` runs on that thread once the last
/// event has been sent, with how the run ended (`None` only if the forwarder died).
pub fn spawn(
    store: Store,
    args: DeployArgs,
    stop: Arc<AtomicBool>,
    sink: impl Sink,
    on_end: impl FnOnce(Option<RunEnded>) + Send + 'static,
) {
    std::thread::spawn(move || {
        let (tx, rx) = mpsc::channel();
        let forward_store = store.clone();
        let forwarder = std::thread::spawn(move || forward(&forward_store, rx, &sink));
        let progress_tx = tx.clone();
        let result = deploy::execute(&store, &args, &stop, &mut |p| {
            let _ = progress_tx.send(Message::Progress(p));
        });
        let _ = tx.send(Message::Done(result.map_err(AppError::from)));
        drop(tx);
        drop(progress_tx);
        let ended = forwarder.join().ok().flatten();
        on_end(ended);
    });
}

fn line_of(output: &Output) -> Option<String> {
    match output {
        Output::Line { line, .. } => Some(line.clone()),
        Output::Task { event } => Some(event.human()).filter(|l| !l.is_empty()),
    }
}

/// What waits to be sent: events in order, then the running step's lines not yet
/// made an event, and its task tally if it changed.
#[derive(Default)]
struct Outbox {
    events: Vec<RunEvent>,
    log: Option<(String, Vec<String>)>,
    tally: Option<(String, TaskTally)>,
    tally_changed: bool,
}

impl Outbox {
    /// Turns the pending lines and tally into events, after those queued.
    fn seal(&mut self) {
        if let Some((step, lines)) = self.log.take() {
            self.events.push(RunEvent::Log { step, lines });
        }
        if std::mem::take(&mut self.tally_changed)
            && let Some((step, tally)) = &self.tally
        {
            self.events.push(RunEvent::Tasks {
                step: step.clone(),
                tally: tally.clone(),
            });
        }
    }

    fn line(&mut self, step: &str, line: String) {
        match &mut self.log {
            Some((s, lines)) if s == step => lines.push(line),
            _ => {
                self.seal();
                self.log = Some((step.to_string(), vec![line]));
            }
        }
    }

    fn task(&mut self, step: &str, output: &Output) {
        let Output::Task { event } = output else {
            return;
        };
        if self.tally.as_ref().is_none_or(|(s, _)| s != step) {
            self.tally = Some((step.to_string(), TaskTally::default()));
        }
        if let Some((_, tally)) = &mut self.tally {
            self.tally_changed |= tally.add(event);
        }
    }

    fn push(&mut self, event: RunEvent) {
        self.seal();
        self.events.push(event);
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.log.is_none() && !self.tally_changed
    }

    fn take(&mut self) -> Vec<RunEvent> {
        self.seal();
        std::mem::take(&mut self.events)
    }
}

/// The state to send: whole the first time (and when the step list changed), then
/// only the steps that changed. It follows the run's commits (a `Follower` reads
/// only the journal lines appended since its last read), so a message costs what
/// changed, not what the state weighs.
struct StateSender<'a> {
    store: &'a Store,
    follower: Follower,
    sent: Option<Sent>,
}

impl StateSender<'_> {
    fn event(&mut self, whole: bool, sink: &impl Sink) -> RunEvent {
        let now = Timestamp::now();
        let read = self.follower.read(now).map_err(AppError::from);
        let update = match self.sent.as_mut() {
            Some(sent) if !whole => sent.update(self.store, read, true, now),
            _ => {
                let snap = snapshot::of(self.store, read, true, now);
                self.sent.get_or_insert_with(Sent::default).whole(&snap);
                Update::Whole(Box::new(snap))
            }
        };
        match update {
            Update::Whole(snapshot) => {
                sink.title(snapshot.title.clone());
                RunEvent::State { snapshot }
            }
            Update::Change(change) => {
                sink.title(change.title.clone());
                RunEvent::Change { change: *change }
            }
        }
    }
}

/// Sends the page one message at most every `FLUSH`, holding everything since the
/// last in order: steps started and finished, log lines, the task tally, and at its
/// end what changed in the state (whole at the first change and at the end). The
/// run's last message goes at once. Returns how the run ended.
fn forward(store: &Store, rx: mpsc::Receiver<Message>, sink: &impl Sink) -> Option<RunEnded> {
    let mut out = Outbox::default();
    let mut state = StateSender {
        store,
        follower: Follower::new(store.clone()),
        sent: None,
    };
    // A state change not yet sent, and when the last message went.
    let mut dirty = false;
    let mut last: Option<Instant> = None;
    let mut ended = None;
    let due =
        |last: Option<Instant>| last.map_or(Duration::ZERO, |t| FLUSH.saturating_sub(t.elapsed()));
    loop {
        let waiting = dirty || !out.is_empty();
        let received = if waiting {
            rx.recv_timeout(due(last))
        } else {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        match received {
            Ok(Message::Progress(Progress::Output { step, output })) => {
                out.task(&step, &output);
                if let Some(line) = line_of(&output) {
                    out.line(&step, line);
                }
            }
            Ok(Message::Progress(p)) => {
                dirty |= !matches!(p, Progress::Retrying { .. });
                out.push(RunEvent::Progress { progress: p });
            }
            Ok(Message::Done(result)) => {
                let whole = state.event(true, sink);
                out.push(whole);
                let end = RunEnded::from_result(result);
                ended = Some(end.clone());
                out.push(RunEvent::Ended { ended: end });
                sink.send(out.take());
                dirty = false;
                last = Some(Instant::now());
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                if !out.is_empty() {
                    sink.send(out.take());
                }
                return ended;
            }
        }
        if (dirty || !out.is_empty()) && due(last).is_zero() {
            if dirty {
                let change = state.event(false, sink);
                out.push(change);
                dirty = false;
            }
            sink.send(out.take());
            last = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use thinkube_engine::paths::{EnvName, Layout};
    use thinkube_engine::run::runner::Stream;
    use thinkube_engine::state::lock::Identity;

    /// One message sent, and when.
    type Delivery = (Instant, Vec<RunEvent>);

    /// The messages sent, and when each was.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Delivery>>>);

    impl Recorder {
        /// Every event, in order, with the message it came in.
        fn events(&self) -> Vec<(usize, RunEvent)> {
            let mut messages = self.0.lock().unwrap();
            std::mem::take(&mut *messages)
                .into_iter()
                .enumerate()
                .flat_map(|(i, (_, events))| events.into_iter().map(move |e| (i, e)))
                .collect()
        }
        fn times(&self) -> Vec<Instant> {
            self.0.lock().unwrap().iter().map(|(t, _)| *t).collect()
        }
    }

    impl Sink for Recorder {
        fn send(&self, events: Vec<RunEvent>) {
            assert!(!events.is_empty(), "an empty message");
            self.0.lock().unwrap().push((Instant::now(), events));
        }
        fn title(&self, _: String) {}
    }

    #[test]
    fn ten_thousand_lines_arrive_in_order_in_a_handful_of_messages() {
        let dir = std::env::temp_dir().join(format!("thinkube-fwd-{}", std::process::id()));
        let store = Store::new(
            Layout::new(&dir, EnvName::default_env()),
            Identity::new("test"),
        );
        let (tx, rx) = mpsc::channel();
        for i in 0..10_000 {
            tx.send(Message::Progress(Progress::Output {
                step: "s".into(),
                output: Output::Line {
                    stream: Stream::Stdout,
                    line: format!("line {i}"),
                },
            }))
            .unwrap();
        }
        tx.send(Message::Done(Err(AppError::new(
            crate::error::ErrorCode::Io,
            "disk full",
        ))))
        .unwrap();
        drop(tx);
        let rec = Recorder::default();
        forward(&store, rx, &rec);
        assert_apart(&rec.times());
        let messages = rec.0.lock().unwrap().len();
        assert!(messages <= 5, "{messages} messages for 10,000 lines");
        let events: Vec<RunEvent> = rec.events().into_iter().map(|(_, e)| e).collect();
        let lines: Vec<&String> = events
            .iter()
            .filter_map(|e| match e {
                RunEvent::Log { lines, .. } => Some(lines),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(lines.len(), 10_000);
        assert!(
            lines
                .iter()
                .enumerate()
                .all(|(i, l)| **l == format!("line {i}"))
        );
        match events.last() {
            Some(RunEvent::Ended { ended }) => {
                assert_eq!(ended.kind, EndKind::Error);
                assert_eq!(ended.message, "disk full");
            }
            other => panic!("the last event is not the end: {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn task_counts_arrive_with_the_lines_not_once_per_event() {
        use thinkube_engine::run::runner::AnsibleEvent;
        let dir = tempfile_dir("tally");
        let store = Store::new(
            Layout::new(&dir, EnvName::default_env()),
            Identity::new("test"),
        );
        let event = |name: &str, host: Option<&str>, task: Option<&str>| {
            Message::Progress(Progress::Output {
                step: "s".into(),
                output: Output::Task {
                    event: AnsibleEvent {
                        event: name.into(),
                        host: host.map(str::to_string),
                        task: task.map(str::to_string),
                        play: None,
                        msg: None,
                        item: None,
                        ignore_errors: None,
                        rc: None,
                    },
                },
            })
        };
        let (tx, rx) = mpsc::channel();
        tx.send(event("task_start", None, Some("Install"))).unwrap();
        for _ in 0..500 {
            tx.send(event("ok", Some("node1"), None)).unwrap();
        }
        tx.send(event("changed", Some("node2"), None)).unwrap();
        drop(tx);
        let rec = Recorder::default();
        forward(&store, rx, &rec);
        let events: Vec<RunEvent> = rec.events().into_iter().map(|(_, e)| e).collect();
        let tallies: Vec<&TaskTally> = events
            .iter()
            .filter_map(|e| match e {
                RunEvent::Tasks { step, tally } if step == "s" => Some(tally),
                _ => None,
            })
            .collect();
        assert!(
            !tallies.is_empty() && tallies.len() <= 3,
            "{} tally messages for 502 events",
            tallies.len()
        );
        let last = tallies[tallies.len() - 1];
        assert_eq!(last.task.as_deref(), Some("Install"));
        assert_eq!(last.hosts["node1"].ok, 500);
        assert_eq!(last.hosts["node2"].changed, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The whole state went to the page after every step (300 steps and the state
    /// document each time, and a message per event): now a run sends it whole at its
    /// start and end, and in between only the steps that changed, with the other
    /// events, in messages at least FLUSH apart.
    #[test]
    fn a_run_sends_the_whole_state_at_its_ends_and_between_only_changed_steps_ten_times_a_second() {
        let steps: Vec<_> = (1..=20)
            .map(|i| {
                (
                    format!("s{i}"),
                    format!("Step {i}"),
                    r#"["sleep", "0.05"]"#.to_string(),
                )
            })
            .collect();
        let (dir, store, args) = crate::test_plan::one_phase("changes", "Twenty steps", &steps);
        let rec = Recorder::default();
        let (done_tx, done_rx) = mpsc::channel();
        spawn(
            store,
            args,
            Arc::new(AtomicBool::new(false)),
            rec.clone(),
            move |_| {
                let _ = done_tx.send(());
            },
        );
        done_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the run ended");
        let times = rec.times();
        assert_apart(&times);
        let events = rec.events();
        let wholes: Vec<usize> = events
            .iter()
            .enumerate()
            .filter_map(|(i, (_, e))| matches!(e, RunEvent::State { .. }).then_some(i))
            .collect();
        let changes: Vec<&StatusChange> = events
            .iter()
            .filter_map(|(_, e)| match e {
                RunEvent::Change { change } => Some(change),
                _ => None,
            })
            .collect();
        assert_eq!(wholes.len(), 2, "whole at the start and at the end");
        assert!(
            matches!(events.last(), Some((_, RunEvent::Ended { ended })) if ended.kind == EndKind::Completed)
        );
        // At most one state update a message, at its end.
        for (i, (m, e)) in events.iter().enumerate() {
            if matches!(e, RunEvent::Change { .. }) {
                assert!(
                    events.get(i + 1).is_none_or(|(next, _)| next != m),
                    "a change is the last event of its message"
                );
            }
        }
        assert!(
            !changes.is_empty(),
            "a run of a second sends changes between"
        );
        for c in &changes {
            let mut ids: Vec<&str> = c.steps.iter().map(|s| s.id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), c.steps.len(), "each step once");
            assert!(
                c.steps.len() < 20,
                "a change carries the changed steps only"
            );
        }
        let (_, RunEvent::State { snapshot }) = &events[wholes[1]] else {
            unreachable!()
        };
        let status = snapshot.status.as_ref().expect("the state was read");
        assert_eq!(status.progress.completed, 20);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Messages at least FLUSH apart, but the run's last, which goes at once.
    fn assert_apart(times: &[Instant]) {
        if times.len() < 2 {
            return;
        }
        for pair in times[..times.len() - 1].windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= FLUSH, "two messages {gap:?} apart");
        }
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("thinkube-{name}-{}", std::process::id()))
    }
}
