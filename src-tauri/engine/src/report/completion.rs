//! What a completed deployment deployed, where, and how long it took: the
//! completion page. Read-only, from the state, the runs of the deployment, the
//! saved configuration (the hosts) and the plan (its title and its `links:`).

use serde::Serialize;

use crate::plan::builtin::PlanRef;
use crate::report::history::all_runs;
use crate::state::model::{DeploymentStatus, StepStatus};
use crate::state::store::Store;
use crate::timestamp::Timestamp;

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize, PartialEq)]
pub struct Completion {
    /// The plan's title (its id when the plan can no longer be read).
    pub plan_title: String,
    /// Where it went, in words: "this machine", "2 servers over SSH", ...
    pub target: String,
    /// The servers, by name and address (none for this machine).
    pub hosts: Vec<HostLine>,
    /// Where the deployed things answer, from the plan's `links:`.
    pub links: Vec<LinkView>,
    /// Where the deployed things' credentials are, in words (the plan's
    /// `credentials:`).
    pub credentials: Option<String>,
    /// Why there are no links when the plan could not be read.
    pub plan_problem: Option<String>,
    pub completed_steps: usize,
    pub skipped_steps: usize,
    /// The deployment's first run's start and its last run's end.
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// The time its runs took, added up (waits between runs left out).
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub run_seconds: i64,
    pub runs: usize,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize, PartialEq)]
pub struct HostLine {
    pub name: String,
    pub address: String,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize, PartialEq)]
pub struct LinkView {
    pub title: String,
    pub url: String,
}

/// The completion of the current deployment; `None` unless it completed.
pub fn completion(store: &Store, now: Timestamp) -> crate::Result<Option<Completion>> {
    let Some(loaded) = store.load(now)? else {
        return Ok(None);
    };
    let d = &loaded.state.deployment;
    if d.status != DeploymentStatus::Completed {
        return Ok(None);
    }
    let steps = || d.steps.iter();
    let (runs, _) = all_runs(store, now)?;
    let mine: Vec<_> = runs
        .iter()
        .filter(|r| r.deployment_id.is_some() && r.deployment_id == d.id)
        .collect();
    let run_seconds = mine
        .iter()
        .filter_map(|r| r.finished_at.map(|f| r.started_at.seconds_until(f).max(0)))
        .sum();
    let plan = d.plan_source.as_deref().map(|source| {
        PlanRef::parse(Some(source)).and_then(|p| p.load(&store.layout().root.join("plans")))
    });
    let (plan_title, links, credentials, plan_problem) = match plan {
        Some(Ok(plan)) => {
            let choices = plan
                .choose(&d.configuration.flags, &d.configuration.vars)
                .ok();
            let links = choices
                .as_ref()
                .map(|choices| plan.links_for(choices))
                .unwrap_or_default()
                .into_iter()
                .map(|(title, url)| LinkView { title, url })
                .collect();
            let credentials = choices.as_ref().and_then(|c| plan.credentials_for(c));
            (plan.title, links, credentials, None)
        }
        Some(Err(e)) => (
            d.plan_id.clone().unwrap_or_default(),
            Vec::new(),
            None,
            Some(e.to_string()),
        ),
        None => (
            d.plan_id.clone().unwrap_or_default(),
            Vec::new(),
            None,
            None,
        ),
    };
    let (target, hosts) = where_it_went(store, d.configuration.inventory.is_none());
    Ok(Some(Completion {
        plan_title,
        target,
        hosts,
        links,
        credentials,
        plan_problem,
        completed_steps: steps()
            .filter(|s| s.status == StepStatus::Completed)
            .count(),
        skipped_steps: steps().filter(|s| s.status == StepStatus::Skipped).count(),
        started_at: mine.iter().map(|r| r.started_at).min(),
        finished_at: mine.iter().filter_map(|r| r.finished_at).max(),
        run_seconds,
        runs: mine.len(),
    }))
}

/// Where the deployment went, from the saved configuration (the wizard's local
/// target writes an inventory of this machine too); without one, from whether the
/// deployment had an inventory.
fn where_it_went(store: &Store, no_inventory: bool) -> (String, Vec<HostLine>) {
    let config = crate::config::load(store.layout()).ok().flatten();
    let local = match &config {
        Some(c) => c.target == crate::config::TargetKind::Local,
        None => no_inventory,
    };
    if local {
        return ("this machine".into(), Vec::new());
    }
    let hosts: Vec<HostLine> = config
        .as_ref()
        .map(|c| {
            c.hosts
                .iter()
                .map(|h| HostLine {
                    name: h.name.clone(),
                    address: h.address.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let kind = match config.as_ref().map(|c| c.target) {
        Some(crate::config::TargetKind::Azure) => "Azure virtual machine",
        _ => "server",
    };
    let target = match hosts.len() {
        0 => "the servers of its inventory".to_string(),
        1 => format!("1 {kind}"),
        n => format!("{n} {kind}s"),
    };
    (target, hosts)
}

// Tested in tests/cli/completion.rs (a real deployment, which `run` makes).
