//! A desktop notification when a run ends: the freedesktop.org notification service
//! (`org.freedesktop.Notifications` on the session bus), which every Linux desktop
//! runs. Sent through libdbus, which the window's toolkit already links
//! (docs/decisions/0012-notifications-over-dbus.md). Without a session bus or a
//! notification service (a server, CI) nothing is shown and nothing else changes.

use std::time::Duration;

use thinkube_engine::report::completion::completion;
use thinkube_engine::report::status;
use thinkube_engine::state::model::StepStatus;
use thinkube_engine::state::store::Store;
use thinkube_engine::timestamp::Timestamp;

use crate::worker::{EndKind, RunEnded};

/// What the desktop is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The headline: what happened ("Deployment completed").
    pub summary: String,
    /// The plan and what to know: steps and time, or the step that failed and why.
    pub body: String,
    /// Failed, blocked or in error: shown as critical (it stays until dismissed).
    pub urgent: bool,
}

/// What a finished run tells the desktop; `None` when nothing ran (the deployment
/// was already completed).
pub fn notice(ended: &RunEnded, store: &Store) -> Option<Notice> {
    let now = Timestamp::now();
    let (summary, urgent) = match ended.kind {
        EndKind::AlreadyCompleted => return None,
        EndKind::Completed => ("Deployment completed", false),
        EndKind::Failed => ("Deployment failed", true),
        EndKind::Interrupted => ("Deployment stopped", false),
        EndKind::Blocked => ("Deployment blocked", true),
        EndKind::AwaitingRestart => ("Restart needed", false),
        EndKind::Error => ("Deployment could not run", true),
    };
    let body = match ended.kind {
        EndKind::Completed => completion(store, now).ok().flatten().map(|c| {
            let steps = match c.completed_steps {
                1 => "1 step".to_string(),
                n => format!("{n} steps"),
            };
            format!(
                "{}: {steps} on {} in {}.",
                c.plan_title,
                c.target,
                duration_words(c.run_seconds)
            )
        }),
        EndKind::Failed => failed_steps(store, now),
        _ => None,
    }
    .unwrap_or_else(|| ended.message.clone());
    Some(Notice {
        summary: summary.to_string(),
        body,
        urgent,
    })
}

/// "Serve the site failed: exit code 1." for each failed step (at most three named).
fn failed_steps(store: &Store, now: Timestamp) -> Option<String> {
    let loaded = store.load(now).ok().flatten()?;
    let view = status::view(store.layout(), Some(&loaded), None, now);
    let failed: Vec<_> = view
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Failed)
        .collect();
    if failed.is_empty() {
        return None;
    }
    let mut lines: Vec<String> = failed
        .iter()
        .take(3)
        .map(|s| match &s.last_error {
            Some(e) => format!("{} failed: {}", s.title, first_line(&e.message)),
            None => format!("{} failed.", s.title),
        })
        .collect();
    if failed.len() > 3 {
        lines.push(format!("and {} more.", failed.len() - 3));
    }
    lines.push("Fix the cause, then Retry failed.".to_string());
    Some(lines.join("\n"))
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or_default()
}

/// A duration as the page writes it (ui/src/time.ts `formatDuration`).
pub fn duration_words(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    }
}

/// How long the notification service may take to answer.
const ANSWER: Duration = Duration::from_secs(2);

/// Shows the notice on the desktop; says why it could not (no session bus, no
/// notification service) and leaves it there: a notification is never worth
/// failing a run's end for.
pub fn show(notice: &Notice) -> Result<u32, String> {
    let conn =
        dbus::blocking::Connection::new_session().map_err(|e| format!("no session bus: {e}"))?;
    show_on(&conn, notice)
}

fn show_on(conn: &dbus::blocking::Connection, notice: &Notice) -> Result<u32, String> {
    use dbus::arg::{PropMap, Variant};

    let proxy = conn.with_proxy(
        "org.freedesktop.Notifications",
        "/org/freedesktop/Notifications",
        ANSWER,
    );
    let mut hints = PropMap::new();
    // The notification spec's urgency: 1 normal, 2 critical.
    hints.insert(
        "urgency".to_string(),
        Variant(Box::new(if notice.urgent { 2u8 } else { 1u8 })),
    );
    hints.insert(
        "desktop-entry".to_string(),
        Variant(Box::new("org.thinkube.installer".to_string())),
    );
    let (id,): (u32,) = proxy
        .method_call(
            "org.freedesktop.Notifications",
            "Notify",
            (
                "Thinkube Installer",
                0u32,
                "",
                notice.summary.as_str(),
                notice.body.as_str(),
                Vec::<String>::new(),
                hints,
                -1i32,
            ),
        )
        .map_err(|e| format!("the notification service did not take it: {e}"))?;
    Ok(id)
}

/// Tells the desktop how the run ended, if anything ran; a notification that cannot
/// be shown is logged, not raised.
pub fn run_ended(ended: &RunEnded, store: &Store) {
    let Some(notice) = notice(ended, store) else {
        return;
    };
    match show(&notice) {
        Ok(id) => tracing::info!(id, summary = %notice.summary, "desktop notification shown"),
        Err(why) => tracing::info!(summary = %notice.summary, "no desktop notification: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use thinkube_engine::run::deploy;

    /// Deploys `steps` (id, title, shell command) headless in a fresh home, and
    /// returns the store and how the run ended, as the window's worker sees it.
    fn run(name: &str, steps: &[(&str, &str, &str)]) -> (Store, RunEnded, std::path::PathBuf) {
        let steps: Vec<_> = steps
            .iter()
            .map(|(id, title, sh)| {
                (
                    id.to_string(),
                    title.to_string(),
                    format!("[sh, -c, \"{sh}\"]"),
                )
            })
            .collect();
        let (dir, store, args) =
            crate::test_plan::one_phase(&format!("notify-{name}"), "The site", &steps);
        let result = deploy::execute(&store, &args, &AtomicBool::new(false), &mut |_| {});
        let ended = RunEnded::from_result(result.map_err(crate::error::AppError::from));
        (store, ended, dir)
    }

    #[test]
    fn a_completed_run_tells_the_plan_the_steps_where_and_how_long() {
        let (store, ended, dir) = run(
            "done",
            &[("a", "Prepare", "true"), ("b", "Serve the site", "true")],
        );
        let n = notice(&ended, &store).expect("a run that ran is told");
        assert_eq!(n.summary, "Deployment completed");
        assert_eq!(n.body, "The site: 2 steps on this machine in 0 s.");
        assert!(!n.urgent);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_run_names_the_step_and_what_to_do_and_is_urgent() {
        let (store, ended, dir) = run(
            "failed",
            &[
                ("a", "Prepare", "true"),
                ("b", "Serve the site", "echo no port >&2; exit 3"),
            ],
        );
        assert_eq!(ended.kind, EndKind::Failed);
        let n = notice(&ended, &store).expect("a run that ran is told");
        assert_eq!(n.summary, "Deployment failed");
        let lines: Vec<&str> = n.body.lines().collect();
        assert!(
            lines[0].starts_with("Serve the site failed: "),
            "{}",
            n.body
        );
        assert!(!lines[0].contains("Prepare"));
        assert_eq!(lines.last(), Some(&"Fix the cause, then Retry failed."));
        assert!(n.urgent);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_run_on_a_completed_deployment_ran_nothing_and_tells_nothing() {
        let (store, _, dir) = run("again", &[("a", "Prepare", "true")]);
        let again = RunEnded {
            kind: EndKind::AlreadyCompleted,
            message: "The deployment is already completed; nothing ran.".into(),
            error: None,
        };
        assert_eq!(notice(&again, &store), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Shows the notice through the bus at `address` (a test's own bus).
    fn show_at(address: &str, notice: &Notice) -> Result<u32, String> {
        let mut channel = dbus::channel::Channel::open_private(address)
            .map_err(|e| format!("no session bus: {e}"))?;
        channel
            .register()
            .map_err(|e| format!("no session bus: {e}"))?;
        show_on(&channel.into(), notice)
    }

    #[test]
    fn an_error_or_a_stop_tells_the_run_s_own_words() {
        let (store, _, dir) = run("words", &[("a", "Prepare", "true")]);
        let ended = |kind, message: &str| RunEnded {
            kind,
            message: message.into(),
            error: None,
        };
        let n = notice(&ended(EndKind::Error, "disk full: free some space"), &store).unwrap();
        assert_eq!(
            (n.summary.as_str(), n.body.as_str(), n.urgent),
            (
                "Deployment could not run",
                "disk full: free some space",
                true
            )
        );
        let n = notice(&ended(EndKind::Interrupted, "Stopped."), &store).unwrap();
        assert_eq!(
            (n.summary.as_str(), n.body.as_str(), n.urgent),
            ("Deployment stopped", "Stopped.", false)
        );
        let n = notice(&ended(EndKind::Blocked, "gate tcp blocked"), &store).unwrap();
        assert_eq!((n.summary.as_str(), n.urgent), ("Deployment blocked", true));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_a_session_bus_nothing_is_shown_and_it_says_why() {
        // A bus address where nothing listens: the same as a server with no desktop.
        let dir = std::env::temp_dir().join(format!("thinkube-nobus-{}", std::process::id()));
        let addr = format!("unix:path={}", dir.join("no-bus").display());
        let n = Notice {
            summary: "Deployment completed".into(),
            body: "x".into(),
            urgent: false,
        };
        let why = show_at(&addr, &n).expect_err("nothing listens there");
        assert!(why.starts_with("no session bus"), "{why}");
    }

    #[test]
    fn durations_are_written_as_the_page_writes_them() {
        assert_eq!(duration_words(0), "0 s");
        assert_eq!(duration_words(59), "59 s");
        assert_eq!(duration_words(65), "1 min 05 s");
        assert_eq!(duration_words(3600 + 7 * 60 + 3), "1 h 07 min");
        assert_eq!(duration_words(-4), "0 s");
    }

    #[test]
    fn only_the_first_line_of_an_error_is_told() {
        assert_eq!(first_line("exit code 1\nTraceback ..."), "exit code 1");
        assert_eq!(first_line(""), "");
    }
}
