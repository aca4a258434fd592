//! What a running playbook is doing, from its callback events: the task it is on,
//! and per host how many tasks were ok, changed, failed, skipped, unreachable or
//! failed with errors ignored (as Ansible's recap counts them, one per task and
//! host, loop items not counted apart).

use std::collections::BTreeMap;

use serde::Serialize;

use super::runner::{AnsibleEvent, EventName};

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostCounts {
    pub ok: u32,
    pub changed: u32,
    pub failed: u32,
    pub skipped: u32,
    pub unreachable: u32,
    pub ignored: u32,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TaskTally {
    pub play: Option<String>,
    /// The task running now (the last one started).
    pub task: Option<String>,
    /// How many tasks have started.
    pub tasks: u32,
    pub hosts: BTreeMap<String, HostCounts>,
}

impl TaskTally {
    /// Counts one event; returns whether anything changed.
    pub fn add(&mut self, e: &AnsibleEvent) -> bool {
        match e.event {
            EventName::PlayStart => self.play = e.play.clone(),
            EventName::TaskStart => {
                self.task = e.task.clone();
                self.tasks += 1;
            }
            _ => {
                let field: fn(&mut HostCounts) -> &mut u32 = match e.event {
                    EventName::Ok => |c| &mut c.ok,
                    EventName::Changed => |c| &mut c.changed,
                    EventName::Failed if e.ignore_errors == Some(true) => |c| &mut c.ignored,
                    EventName::Failed => |c| &mut c.failed,
                    EventName::Skipped => |c| &mut c.skipped,
                    EventName::Unreachable => |c| &mut c.unreachable,
                    _ => return false,
                };
                let Some(host) = &e.host else { return false };
                *field(self.hosts.entry(host.clone()).or_default()) += 1;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, host: Option<&str>, task: Option<&str>) -> AnsibleEvent {
        AnsibleEvent {
            event: name.into(),
            host: host.map(str::to_string),
            task: task.map(str::to_string),
            play: Some("Site".into()),
            msg: None,
            item: None,
            ignore_errors: None,
            rc: None,
        }
    }

    #[test]
    fn counts_each_task_result_per_host_and_follows_the_task() {
        let mut t = TaskTally::default();
        let mut ignored = event("failed", Some("node1"), None);
        ignored.ignore_errors = Some(true);
        for e in [
            event("play_start", None, None),
            event("task_start", None, Some("Install packages")),
            event("item_ok", Some("node1"), None),
            event("item_ok", Some("node1"), None),
            event("changed", Some("node1"), None),
            event("ok", Some("node2"), None),
            event("task_start", None, Some("Start k8s")),
            event("failed", Some("node2"), None),
            ignored,
            event("skipped", Some("node1"), None),
            event("unreachable", Some("node3"), None),
        ] {
            t.add(&e);
        }
        assert_eq!(t.task.as_deref(), Some("Start k8s"));
        assert_eq!(t.play.as_deref(), Some("Site"));
        assert_eq!(t.tasks, 2);
        let c = |ok, changed, failed, skipped, unreachable, ignored| HostCounts {
            ok,
            changed,
            failed,
            skipped,
            unreachable,
            ignored,
        };
        assert_eq!(
            t.hosts["node1"],
            c(0, 1, 0, 1, 0, 1),
            "loop items are not counted apart"
        );
        assert_eq!(t.hosts["node2"], c(1, 0, 1, 0, 0, 0));
        assert_eq!(t.hosts["node3"], c(0, 0, 0, 0, 1, 0));
    }

    #[test]
    fn an_event_it_does_not_count_changes_nothing() {
        let mut t = TaskTally::default();
        assert!(!t.add(&event("stats", None, None)));
        assert!(!t.add(&event("ok", None, None)), "a result without a host");
        assert_eq!(t, TaskTally::default());
    }
}
