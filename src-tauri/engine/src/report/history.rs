//! History: the runs of an environment (`history`), one run (`show-run`), and what
//! differs between two runs (`diff-runs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::state::model::{AttemptOutcome, RunOutcome, RunRecord, StateFile};
use crate::timestamp::Timestamp;

/// The runs to list: finished ones from `runs/` and the state's latest run if it is
/// not there yet (still running). Oldest first.
pub(crate) fn runs_with_current(
    mut finished: Vec<RunRecord>,
    state: Option<&StateFile>,
) -> Vec<RunRecord> {
    if let Some(current) = state.and_then(|s| s.current_run.as_ref())
        && !finished.iter().any(|r| r.run_id == current.run_id)
    {
        finished.push(current.clone());
    }
    finished
}

/// Every run of the environment, oldest first, and the run files that could not be
/// read (to report, not to stop on).
pub(crate) fn all_runs(
    store: &crate::state::store::Store,
    now: Timestamp,
) -> crate::Result<(Vec<RunRecord>, Vec<crate::state::store::UnreadableFile>)> {
    let state = as_readers_see_it(store, now)?;
    let (finished, unreadable) = store.read_runs()?;
    Ok((runs_with_current(finished, state.as_ref()), unreadable))
}

/// The state as a reader shows it: a run whose process died as it ended (the way
/// `status` shows it and the next writer records it).
fn as_readers_see_it(
    store: &crate::state::store::Store,
    now: Timestamp,
) -> crate::Result<Option<StateFile>> {
    let loaded = store.load(now)?.map(|l| l.state);
    Ok(match &loaded {
        Some(s) if store.lock_holder().is_none() => {
            crate::state::store::reconcile_dead(s, crate::state::lock::process_alive)
                .map(|r| r.state)
                .or(loaded)
        }
        _ => loaded,
    })
}

/// What the app's History screen shows: every run, newest last, and the run files
/// that could not be read (named, never hidden, never touched).
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize)]
pub struct HistoryListing {
    pub rows: Vec<HistoryRow>,
    pub unreadable: Vec<UnreadableRun>,
}

/// A run file in `runs/` that could not be read, and why.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize, PartialEq)]
pub struct UnreadableRun {
    pub path: String,
    pub problem: String,
}

/// [`all_runs`] as rows, with the unreadable files named.
pub fn listing(
    store: &crate::state::store::Store,
    now: Timestamp,
) -> crate::Result<HistoryListing> {
    let (runs, unreadable) = all_runs(store, now)?;
    Ok(HistoryListing {
        rows: rows(&runs),
        unreadable: unreadable
            .into_iter()
            .map(|(path, problem)| UnreadableRun {
                path: path.display().to_string(),
                problem,
            })
            .collect(),
    })
}

/// One run by id, finished or current; a missing one is bad input naming where to look.
pub fn find_run(
    store: &crate::state::store::Store,
    run_id: &str,
    now: Timestamp,
) -> crate::Result<RunRecord> {
    let state = as_readers_see_it(store, now)?;
    store.read_run(run_id, state.as_ref())?.ok_or_else(|| {
        crate::EngineError::Usage(format!(
            "there is no run `{run_id}` in environment `{}`; `thinkube-deploy history` lists them",
            store.layout().env
        ))
    })
}

/// How long each step of the current deployment's plan took the last time it
/// succeeded, from this environment's runs of that plan: what the deploy screen
/// estimates the time left from. Empty before any run of the plan finished a step.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize, Default, PartialEq)]
pub struct StepTimings {
    pub plan_id: Option<String>,
    /// Step id to seconds.
    #[cfg_attr(feature = "ts", ts(type = "Record<string, number>"))]
    pub seconds: BTreeMap<String, i64>,
    /// How many runs of the plan they come from.
    pub runs: usize,
}

/// [`StepTimings`] for the current deployment (run files that cannot be read are
/// left out: `history` names them).
pub fn step_timings(
    store: &crate::state::store::Store,
    now: Timestamp,
) -> crate::Result<StepTimings> {
    let state = as_readers_see_it(store, now)?;
    let Some(plan_id) = state.as_ref().and_then(|s| s.deployment.plan_id.clone()) else {
        return Ok(StepTimings::default());
    };
    let (runs, _) = all_runs(store, now)?;
    Ok(timings_of(&plan_id, &runs))
}

/// The timings of `plan_id`'s successful attempts in `runs` (oldest first: the
/// latest wins).
pub fn timings_of(plan_id: &str, runs: &[RunRecord]) -> StepTimings {
    let mut out = StepTimings {
        plan_id: Some(plan_id.to_string()),
        ..StepTimings::default()
    };
    for run in runs
        .iter()
        .filter(|r| r.plan_id.as_deref() == Some(plan_id))
    {
        out.runs += 1;
        for s in &run.steps_attempted {
            if let (AttemptOutcome::Success, Some(a), Some(b)) =
                (s.outcome, s.started_at, s.finished_at)
            {
                out.seconds
                    .insert(s.step.clone(), a.seconds_until(b).max(0));
            }
        }
    }
    out
}

/// A row of `history --json`.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize)]
pub struct HistoryRow {
    pub run_id: String,
    pub kind: crate::state::model::RunKind,
    pub deployment_id: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub duration_seconds: Option<i64>,
    pub outcome: RunOutcome,
    pub plan_id: Option<String>,
    pub flags: Vec<String>,
    pub steps_attempted: usize,
}

pub fn rows(runs: &[RunRecord]) -> Vec<HistoryRow> {
    runs.iter()
        .map(|r| HistoryRow {
            run_id: r.run_id.clone(),
            kind: r.kind,
            deployment_id: r.deployment_id.clone(),
            started_at: r.started_at,
            finished_at: r.finished_at,
            duration_seconds: r.finished_at.map(|f| r.started_at.seconds_until(f)),
            outcome: r.outcome,
            plan_id: r.plan_id.clone(),
            flags: r.enabled_flags.clone(),
            steps_attempted: r.steps_attempted.len(),
        })
        .collect()
}

pub(crate) fn render_history(runs: &[RunRecord]) -> String {
    if runs.is_empty() {
        return "No runs yet.\n".into();
    }
    let mut out = format!(
        "{:<24} {:<25} {:<25} {:<11} {:<14} {}\n",
        "RUN", "STARTED", "ENDED", "OUTCOME", "PLAN", "FLAGS"
    );
    for r in runs {
        let _ = writeln!(
            out,
            "{:<24} {:<25} {:<25} {:<11} {:<14} {}",
            r.run_id,
            r.started_at.local_display(),
            r.finished_at.map_or("-".into(), Timestamp::local_display),
            r.outcome.as_str(),
            r.plan_id.as_deref().unwrap_or("-"),
            if r.enabled_flags.is_empty() {
                "-".into()
            } else {
                r.enabled_flags.join(",")
            }
        );
    }
    out
}

pub(crate) fn render_run(r: &RunRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Run {} ({:?})", r.run_id, r.kind);
    let _ = writeln!(
        out,
        "  deployment: {}",
        r.deployment_id.as_deref().unwrap_or("-")
    );
    let _ = writeln!(
        out,
        "  plan:       {} {}",
        r.plan_id.as_deref().unwrap_or("-"),
        r.plan_digest.as_deref().unwrap_or("")
    );
    let _ = writeln!(out, "  started:    {}", r.started_at.local_display());
    let _ = writeln!(
        out,
        "  finished:   {}",
        r.finished_at.map_or("-".into(), Timestamp::local_display)
    );
    let _ = writeln!(out, "  outcome:    {}", r.outcome.as_str());
    let _ = writeln!(out, "  program:    {}", r.program);
    let _ = writeln!(
        out,
        "  flags:      {}",
        if r.enabled_flags.is_empty() {
            "-".into()
        } else {
            r.enabled_flags.join(", ")
        }
    );
    for (k, v) in &r.configuration.vars {
        let _ = writeln!(out, "  var:        {k}={v}");
    }
    for (k, v) in &r.configuration.answers {
        let _ = writeln!(out, "  answer:     {k}={v}");
    }
    let _ = writeln!(out, "Steps attempted:");
    if r.steps_attempted.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for s in &r.steps_attempted {
        let took = match (s.started_at, s.finished_at) {
            (Some(a), Some(b)) => format!(" in {}s", a.seconds_until(b)),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  {} attempt {}: {:?}{took}",
            s.step, s.attempt, s.outcome
        );
        if let Some(e) = &s.error {
            let _ = writeln!(out, "      error: {}", e.message);
            if let Some(t) = &e.task {
                let _ = writeln!(out, "      task:  {t}");
            }
        }
    }
    out
}

/// One difference between two runs.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize, PartialEq)]
pub struct Difference {
    /// e.g. `flags.gpu`, `plan_digest`, `steps.microk8s`.
    pub field: String,
    #[cfg_attr(feature = "ts", ts(type = "unknown"))]
    pub a: Value,
    #[cfg_attr(feature = "ts", ts(type = "unknown"))]
    pub b: Value,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize)]
pub struct RunDiff {
    pub run_a: String,
    pub run_b: String,
    pub differences: Vec<Difference>,
}

/// What differs between two runs: plan, configuration (flags, vars, answers),
/// outcome, and each step's last outcome in the run.
pub fn diff(a: &RunRecord, b: &RunRecord) -> RunDiff {
    let mut differences = Vec::new();
    let mut push = |field: String, x: Value, y: Value| {
        if x != y {
            differences.push(Difference { field, a: x, b: y });
        }
    };
    push("kind".into(), json(&a.kind), json(&b.kind));
    push("plan_id".into(), json(&a.plan_id), json(&b.plan_id));
    push(
        "plan_digest".into(),
        json(&a.plan_digest),
        json(&b.plan_digest),
    );
    push("outcome".into(), json(&a.outcome), json(&b.outcome));
    let ca = &a.configuration;
    let cb = &b.configuration;
    for (prefix, x, y) in [
        ("flags", to_map(&ca.flags), to_map(&cb.flags)),
        ("vars", to_map(&ca.vars), to_map(&cb.vars)),
        ("answers", to_map(&ca.answers), to_map(&cb.answers)),
        ("steps", step_outcomes(a), step_outcomes(b)),
    ] {
        let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
        for k in keys {
            push(
                format!("{prefix}.{k}"),
                x.get(k).cloned().unwrap_or(Value::Null),
                y.get(k).cloned().unwrap_or(Value::Null),
            );
        }
    }
    RunDiff {
        run_a: a.run_id.clone(),
        run_b: b.run_id.clone(),
        differences,
    }
}

fn json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn to_map<V: Serialize>(m: &BTreeMap<String, V>) -> BTreeMap<String, Value> {
    m.iter().map(|(k, v)| (k.clone(), json(v))).collect()
}

/// Each step's outcome in a run (its last attempt there).
fn step_outcomes(r: &RunRecord) -> BTreeMap<String, Value> {
    r.steps_attempted
        .iter()
        .map(|s| (s.step.clone(), json(&s.outcome)))
        .collect()
}

pub(crate) fn render_diff(d: &RunDiff) -> String {
    if d.differences.is_empty() {
        return format!(
            "Runs {} and {} do not differ in plan, configuration or outcomes.\n",
            d.run_a, d.run_b
        );
    }
    let mut out = format!("{} -> {}\n", d.run_a, d.run_b);
    for x in &d.differences {
        let _ = writeln!(out, "  {}: {} -> {}", x.field, x.a, x.b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(plan: &str, steps: &[(&str, &str, &str, &str)]) -> RunRecord {
        let steps: Vec<Value> = steps
            .iter()
            .map(|(id, outcome, a, b)| {
                serde_json::json!({"step": id, "attempt": 1, "outcome": outcome, "started_at": a, "finished_at": b})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "run_id": "r", "kind": "deploy", "deployment_id": "d", "started_at": "2026-12-04T10:00:00Z",
            "finished_at": null, "outcome": "failed", "plan_id": plan, "plan_digest": null,
            "configuration": {}, "enabled_flags": [], "steps_attempted": steps, "program": "t"
        }))
        .unwrap()
    }

    #[test]
    fn timings_come_from_the_latest_success_of_the_same_plan() {
        let runs = [
            run(
                "demo",
                &[(
                    "a",
                    "success",
                    "2026-12-04T10:00:00Z",
                    "2026-12-04T10:00:30Z",
                )],
            ),
            run(
                "other",
                &[(
                    "b",
                    "success",
                    "2026-12-04T10:00:00Z",
                    "2026-12-04T11:00:00Z",
                )],
            ),
            run(
                "demo",
                &[
                    (
                        "a",
                        "success",
                        "2026-12-04T10:00:00Z",
                        "2026-12-04T10:00:10Z",
                    ),
                    (
                        "b",
                        "failed",
                        "2026-12-04T10:00:00Z",
                        "2026-12-04T10:09:00Z",
                    ),
                ],
            ),
        ];
        let t = timings_of("demo", &runs);
        assert_eq!(t.runs, 2);
        assert_eq!(t.seconds.get("a"), Some(&10), "the latest success wins");
        assert_eq!(
            t.seconds.get("b"),
            None,
            "a failure or another plan's step is no timing"
        );
    }
}
