//! A run: the engine API that `deploy`, `resume` and `retry` call.
//!
//! `RunSession::begin` decides, from the deployment's state and the request, what the
//! run does (exactly as the contract says), records the run, and holds the writer
//! lock until `finish`. Each step transition is one durable commit with its event and
//! its entry in the run's `steps_attempted`. The runner only executes steps.

use crate::error::{EngineError, Result};
use crate::state::bounds;
use crate::state::lifecycle::{AnyDeployment, Deployment, InProgress, PlannedDeployment};
use crate::state::lock::LockWait;
use crate::state::model::{
    AttemptOutcome, DeploymentStatus, EventKind, NewEvent, ProcessRef, RunKind, RunOutcome,
    RunRecord, RunStep, StepError, StepRecord, StepStatus,
};
use crate::state::store::{StepChange, Store, Writer, new_run_id};
use crate::timestamp::Timestamp;

/// What the user asked for.
#[derive(Debug, Clone)]
pub enum Request {
    /// Start `plan` when nothing is unfinished; otherwise resume the unfinished
    /// deployment (interrupted steps run again). Refused when steps have failed.
    Deploy { plan: PlannedDeployment },
    /// Continue an unfinished deployment; refused when there is none.
    Resume { plan: Option<PlannedDeployment> },
    /// Run the failed steps (or the named ones) again, then continue.
    Retry {
        steps: Vec<String>,
        plan: Option<PlannedDeployment>,
    },
}

impl Request {
    /// A request of `kind` following `plan`; `steps` are retry's (empty: every
    /// failed step) and ignored by deploy and resume.
    pub fn new(kind: RunKind, steps: Vec<String>, plan: PlannedDeployment) -> Request {
        match kind {
            RunKind::Deploy => Request::Deploy { plan },
            RunKind::Resume => Request::Resume { plan: Some(plan) },
            RunKind::Retry => Request::Retry {
                steps,
                plan: Some(plan),
            },
        }
    }

    /// What was asked for, in the word the run's record keeps.
    pub fn kind(&self) -> RunKind {
        match self {
            Request::Deploy { .. } => RunKind::Deploy,
            Request::Resume { .. } => RunKind::Resume,
            Request::Retry { .. } => RunKind::Retry,
        }
    }

    /// The plan the run will follow, when the caller gave one.
    fn plan(&self) -> Option<&PlannedDeployment> {
        match self {
            Request::Deploy { plan } => Some(plan),
            Request::Resume { plan } | Request::Retry { plan, .. } => plan.as_ref(),
        }
    }
}

/// What `begin` needs to know of the world.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// e.g. `thinkube-deploy 0.1.0`.
    pub program: String,
    /// This boot's id (/proc/sys/kernel/random/boot_id), to tell whether a restart
    /// that was asked for has happened.
    pub boot_id: Option<String>,
    pub wait: LockWait,
}

/// How `begin` ended when there is no run to make.
#[derive(Debug)]
pub enum Begun {
    Run(Box<RunSession>),
    /// `deploy` of a deployment that already completed: nothing to do.
    AlreadyCompleted {
        deployment_id: Option<String>,
    },
}

impl std::fmt::Debug for RunSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSession")
            .field("run_id", &self.run.run_id)
            .finish()
    }
}

/// A run in progress; holds the writer lock.
pub struct RunSession {
    writer: Writer,
    deployment: Deployment<InProgress>,
    run: RunRecord,
    /// The plan's definition digest of each step, recorded when the step starts.
    digests: std::collections::HashMap<String, String>,
    /// Each step's index in the deployment (its steps do not change during a run).
    index: std::collections::HashMap<String, usize>,
    /// What changed since the last commit, by index: the deployment's steps and the
    /// run's attempted steps (a commit writes only those; see `state::journal`).
    touched: Vec<usize>,
    touched_attempts: Vec<usize>,
    /// The steps before this one are done (completed or skipped) for the rest of
    /// the run: the search for the next step starts here.
    done_before: std::cell::Cell<usize>,
    /// The run's attempt of each step whose error keeps an output tail (only a
    /// step's latest attempt does), so that a new attempt clears it without a search.
    tails: std::collections::HashMap<String, usize>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub run_id: String,
    pub outcome: RunOutcome,
    pub status: DeploymentStatus,
    pub serial: u64,
}

impl RunSession {
    /// Opens the environment for a run and records its start.
    pub fn begin(
        store: &Store,
        request: Request,
        ctx: &RunContext,
        now: Timestamp,
    ) -> Result<Begun> {
        let asked = request.kind();
        let operation = asked.as_str();
        let mut writer = store.open_writer(operation, ctx.wait, now)?;
        writer.wait_for_orphans(now)?;
        let current = AnyDeployment::from_record(writer.state().deployment.clone())
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        let mut events = Vec::new();
        // Match the deployment to the plan it will now follow (steps by id).
        let digests = request
            .plan()
            .map(|p| {
                p.steps
                    .iter()
                    .filter_map(|s| Some((s.id.clone(), s.definition_digest.clone()?)))
                    .collect()
            })
            .unwrap_or_default();
        let current = match request.plan() {
            None => current,
            Some(plan) => matched_to_plan(current, plan, &mut events)?,
        };
        let status = current.status();
        let (deployment, kind) = match (request, current) {
            (Request::Deploy { plan }, AnyDeployment::NotStarted(d)) => {
                let d = d.start(plan, now)?;
                events.push(NewEvent::new(
                    EventKind::DeploymentStarted,
                    format!(
                        "deployment {} of plan {} started",
                        d.record().id.as_deref().unwrap_or("-"),
                        d.record().plan_id.as_deref().unwrap_or("-")
                    ),
                ));
                (d, RunKind::Deploy)
            }
            (Request::Deploy { .. }, AnyDeployment::Interrupted(d)) => {
                (d.resume(), RunKind::Deploy)
            }
            (Request::Resume { .. }, AnyDeployment::Interrupted(d)) => {
                (d.resume(), RunKind::Resume)
            }
            (
                Request::Deploy { .. } | Request::Resume { .. },
                AnyDeployment::AwaitingRestart(d),
            ) => {
                let kind = asked;
                let d = d
                    .continue_after_restart(ctx.boot_id.as_deref().unwrap_or(""))
                    .map_err(|(_, e)| EngineError::RestartDue(e))?;
                (d, kind)
            }
            (_, AnyDeployment::InProgress(_)) => {
                // Only possible when a step's process outlived the runner that
                // started it: that process still works on the deployment.
                let (step, pid) = writer.orphaned_step().unwrap_or_default();
                return Err(EngineError::StepStillRunning { step, pid });
            }
            (Request::Deploy { .. }, AnyDeployment::Failed(d)) => {
                return Err(EngineError::DeploymentFailed {
                    steps: failed_steps(d.record()),
                });
            }
            (Request::Deploy { .. }, AnyDeployment::Completed(d)) => {
                // Keep what the plan said (notices of changed steps) even so.
                if !events.is_empty() {
                    let record = d.record().clone();
                    writer.commit(now, events, |s| {
                        s.deployment = record;
                        Ok(())
                    })?;
                }
                writer.finish()?;
                return Ok(Begun::AlreadyCompleted {
                    deployment_id: d.record().id.clone(),
                });
            }
            (Request::Resume { .. }, _) => return Err(nothing_to(RunKind::Resume, status)),
            (Request::Retry { steps, .. }, AnyDeployment::Failed(d)) => {
                (retried(d.retry(&steps), &mut events)?, RunKind::Retry)
            }
            (Request::Retry { steps, .. }, AnyDeployment::Interrupted(d)) => {
                (retried(d.retry(&steps), &mut events)?, RunKind::Retry)
            }
            (Request::Retry { steps, .. }, AnyDeployment::Completed(d)) => {
                (retried(d.retry(&steps), &mut events)?, RunKind::Retry)
            }
            (Request::Retry { .. }, _) => return Err(nothing_to(RunKind::Retry, status)),
        };
        let record = deployment.record();
        let run = new_run(record, kind, &ctx.program, now);
        for e in &mut events {
            e.run_id = Some(run.run_id.clone());
        }
        events.push(
            NewEvent::new(EventKind::RunStarted, format!("{} run started", operation))
                .run(Some(&run.run_id)),
        );
        let (rec, r) = (record.clone(), run.clone());
        writer.commit(now, events, |s| {
            s.deployment = rec;
            s.current_run = Some(r);
            Ok(())
        })?;
        let index = deployment
            .record()
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        Ok(Begun::Run(Box::new(RunSession {
            writer,
            deployment,
            run,
            digests,
            index,
            touched: Vec::new(),
            touched_attempts: Vec::new(),
            done_before: std::cell::Cell::new(0),
            tails: std::collections::HashMap::new(),
        })))
    }

    pub fn run_id(&self) -> &str {
        &self.run.run_id
    }

    pub fn deployment(&self) -> &Deployment<InProgress> {
        &self.deployment
    }

    pub fn store(&self) -> &Store {
        self.writer.store()
    }

    /// The next step to run, in plan order.
    pub fn next_step(&self) -> Option<&StepRecord> {
        let (i, step) = self.deployment.next_runnable_from(self.done_before.get())?;
        self.done_before.set(i);
        Some(step)
    }

    /// Records that a step starts (a `running` attempt), durably, before it runs.
    /// Returns the attempt number and the serial of the commit.
    pub fn start_step(
        &mut self,
        step: &str,
        process: Option<ProcessRef>,
        log_file: Option<String>,
        now: Timestamp,
    ) -> Result<(u32, u64)> {
        if let Some(digest) = self.digests.get(step) {
            self.deployment.record_definition(step, digest)?;
        }
        let attempt = self
            .deployment
            .start_step(step, &self.run.run_id, process, log_file, now)?;
        self.touch(step);
        self.touched_attempts.push(self.run.steps_attempted.len());
        self.run.steps_attempted.push(RunStep {
            step: step.to_string(),
            attempt,
            outcome: AttemptOutcome::Running,
            started_at: Some(now),
            finished_at: None,
            error: None,
        });
        let event =
            NewEvent::new(EventKind::StepStarted, format!("attempt {attempt} started")).step(step);
        let serial = self.commit(now, event)?;
        Ok((attempt, serial))
    }

    /// Records the pid of the process running a step, once spawned. Visible to
    /// readers and kept if this runner dies (so nothing runs the step beside a live
    /// orphan), but not synced on its own: a power loss ends the process too, and
    /// the step's next commit, synced, holds it as well (see `state::journal`).
    pub fn set_step_process(
        &mut self,
        step: &str,
        process: ProcessRef,
        now: Timestamp,
    ) -> Result<u64> {
        self.deployment.set_step_process(step, process)?;
        self.touch(step);
        let event = NewEvent::new(
            EventKind::StepStarted,
            format!("running in pid {}", process.pid),
        )
        .step(step);
        self.commit_as(now, event, false)
    }

    /// The step's process exited successfully.
    pub fn complete_step(&mut self, step: &str, now: Timestamp) -> Result<u64> {
        self.deployment.complete_step(step, now)?;
        self.touch(step);
        self.end_attempt(step, AttemptOutcome::Success, None, now);
        self.commit(
            now,
            NewEvent::new(EventKind::StepCompleted, "completed").step(step),
        )
    }

    /// The step failed.
    pub fn fail_step(&mut self, step: &str, error: StepError, now: Timestamp) -> Result<u64> {
        let message = error.message.clone();
        self.deployment.fail_step(step, error.clone(), now)?;
        self.touch(step);
        self.end_attempt(step, AttemptOutcome::Failed, Some(error), now);
        self.commit(
            now,
            NewEvent::new(EventKind::StepFailed, message).step(step),
        )
    }

    /// Makes a step that just failed runnable again (an automatic retry); its
    /// failed attempt stays in its history.
    pub(crate) fn rerun_failed_step(&mut self, step: &str, now: Timestamp) -> Result<u64> {
        self.deployment.rerun_failed_step(step)?;
        self.touch(step);
        let event = NewEvent::new(EventKind::StepsReset, "automatic retry").step(step);
        self.commit(now, event)
    }

    /// Records what the run learned about the infrastructure (a gate's refresh of
    /// stale facts, what a gate saw), with its event, without changing a step.
    pub(crate) fn record_facts(
        &mut self,
        event: NewEvent,
        change: impl FnOnce(&mut crate::state::model::StateFile),
        now: Timestamp,
    ) -> Result<u64> {
        let record = self.deployment.record().clone();
        let run = self.run.clone();
        let event = event.run(Some(&self.run.run_id));
        let serial = self
            .writer
            .commit_replacing(now, vec![event], record, Some(run), |s| {
                change(s);
                Ok(())
            })?;
        self.touched.clear();
        self.touched_attempts.clear();
        Ok(serial)
    }

    /// Records an event of this run (a gate's verdict, say) without changing a step.
    pub fn record(&mut self, event: NewEvent, now: Timestamp) -> Result<u64> {
        self.commit(now, event)
    }

    /// Ends the run after `step`, which asked for a restart: the deployment waits
    /// for the machine's boot id to change. Releases the lock.
    pub(crate) fn finish_awaiting_restart(
        self,
        step: &str,
        boot_id: Option<String>,
        now: Timestamp,
    ) -> Result<RunSummary> {
        let RunSession {
            writer,
            deployment,
            run,
            ..
        } = self;
        let run_id = run.run_id.clone();
        let waiting = deployment
            .await_restart(step, boot_id, now)
            .map_err(|(_, e)| EngineError::Transition(e))?;
        let events = vec![
            NewEvent::new(
                EventKind::AwaitingRestart,
                "restart the machine, then run deploy to continue",
            )
            .step(step)
            .run(Some(&run_id)),
            NewEvent::new(
                EventKind::RunFinished,
                "run ended: success (awaiting restart)",
            )
            .run(Some(&run_id)),
        ];
        conclude(
            writer,
            run,
            waiting.erase(),
            RunOutcome::Success,
            events,
            now,
        )
    }

    /// The state as last committed (for gates that read cached facts).
    pub fn state(&self) -> &crate::state::model::StateFile {
        self.writer.state()
    }

    fn end_attempt(
        &mut self,
        step: &str,
        outcome: AttemptOutcome,
        error: Option<StepError>,
        now: Timestamp,
    ) {
        let attempts = &mut self.run.steps_attempted;
        let Some(i) = attempts
            .iter()
            .rposition(|a| a.step == step && a.outcome == AttemptOutcome::Running)
        else {
            return;
        };
        let a = &mut attempts[i];
        a.outcome = outcome;
        a.finished_at = Some(now);
        a.error = error.map(bounds::step_error);
        self.touched_attempts.push(i);
        // Only a step's latest attempt keeps its output tail.
        let has_tail = a.error.as_ref().is_some_and(|e| !e.output_tail.is_empty());
        let older = if has_tail {
            self.tails.insert(step.to_string(), i)
        } else {
            self.tails.remove(step)
        };
        if let Some(j) = older.filter(|j| *j != i)
            && let Some(e) = attempts.get_mut(j).and_then(|o| o.error.as_mut())
        {
            e.output_tail.clear();
            self.touched_attempts.push(j);
        }
    }

    /// Notes that `step` changed since the last commit.
    fn touch(&mut self, step: &str) {
        if let Some(i) = self.index.get(step) {
            self.touched.push(*i);
        }
    }

    /// Commits what changed since the last commit, with `event`.
    fn commit(&mut self, now: Timestamp, event: NewEvent) -> Result<u64> {
        self.commit_as(now, event, true)
    }

    fn commit_as(&mut self, now: Timestamp, event: NewEvent, durable: bool) -> Result<u64> {
        let event = event.run(Some(&self.run.run_id));
        let change = StepChange {
            deployment: self.deployment.record(),
            steps: &self.touched,
            run: &self.run,
            run_steps: &self.touched_attempts,
            durable,
        };
        let serial = self.writer.commit_steps(now, vec![event], change)?;
        self.touched.clear();
        self.touched_attempts.clear();
        Ok(serial)
    }

    /// Ends the run: a step still running is recorded as interrupted (the run was
    /// stopped), the deployment settles from its steps, and the run is written to
    /// history. Releases the lock.
    pub fn finish(self, now: Timestamp) -> Result<RunSummary> {
        let RunSession {
            writer,
            deployment,
            run,
            ..
        } = self;
        let settled = deployment.settle(now).erase();
        let status = settled.status();
        let outcome = match status {
            DeploymentStatus::Completed => RunOutcome::Success,
            DeploymentStatus::Failed => RunOutcome::Failed,
            _ => RunOutcome::Interrupted,
        };
        let run_id = Some(run.run_id.as_str());
        let mut events = vec![
            NewEvent::new(
                EventKind::RunFinished,
                format!("run ended: {}", outcome.as_str()),
            )
            .run(run_id),
        ];
        if matches!(
            status,
            DeploymentStatus::Completed | DeploymentStatus::Failed
        ) {
            events.push(
                NewEvent::new(
                    EventKind::DeploymentFinished,
                    format!("deployment {}", status.as_str()),
                )
                .run(run_id),
            );
        }
        conclude(writer, run, settled, outcome, events, now)
    }
}

/// Records how a run ended (its attempts still running as interrupted), writes it to
/// history, commits the deployment, and releases the lock.
fn conclude(
    mut writer: Writer,
    mut run: RunRecord,
    deployment: AnyDeployment,
    outcome: RunOutcome,
    events: Vec<NewEvent>,
    now: Timestamp,
) -> Result<RunSummary> {
    for a in &mut run.steps_attempted {
        if a.outcome == AttemptOutcome::Running {
            a.outcome = AttemptOutcome::Interrupted;
            a.finished_at = Some(now);
        }
    }
    run.outcome = outcome;
    run.finished_at = Some(now);
    writer.write_run_file(&run)?;
    let status = deployment.status();
    let run_id = run.run_id.clone();
    let record = deployment.into_record();
    let serial = writer.commit(now, events, |s| {
        s.deployment = record;
        s.current_run = Some(run);
        Ok(())
    })?;
    writer.finish()?;
    Ok(RunSummary {
        run_id,
        outcome,
        status,
        serial,
    })
}

/// The deployment matched to the plan it will now follow (steps by id), with an
/// event for each change; refused when a failed or interrupted step would leave it.
fn matched_to_plan(
    current: AnyDeployment,
    plan: &PlannedDeployment,
    events: &mut Vec<NewEvent>,
) -> Result<AnyDeployment> {
    let (replanned, changes, removed) = current.replan(plan);
    let unfinished: Vec<String> = removed
        .iter()
        .filter(|s| matches!(s.status, StepStatus::Failed | StepStatus::Interrupted))
        .map(|s| {
            format!(
                "step `{}` ({}, {} after {} attempt(s))",
                s.id,
                s.title,
                s.status.as_str(),
                s.attempts.len()
            )
        })
        .collect();
    if !unfinished.is_empty() {
        return Err(EngineError::UnfinishedStepsRemoved { steps: unfinished });
    }
    if !changes.is_empty() {
        events.push(NewEvent::new(
            EventKind::PlanChanged,
            changes.describe().join("; "),
        ));
        for step in removed {
            let message = format!(
                "step `{}` ({}) is no longer in the plan; it was {} after {} attempt(s)",
                step.id,
                step.title,
                step.status.as_str(),
                step.attempts.len()
            );
            events.push(NewEvent::new(EventKind::PlanChanged, message).step(&step.id));
        }
    }
    Ok(replanned)
}

/// The record of a run of `kind` starting now on `record`.
fn new_run(
    record: &crate::state::model::DeploymentRecord,
    kind: RunKind,
    program: &str,
    now: Timestamp,
) -> RunRecord {
    RunRecord {
        run_id: new_run_id(now),
        kind,
        deployment_id: record.id.clone(),
        started_at: now,
        finished_at: None,
        outcome: RunOutcome::Running,
        plan_id: record.plan_id.clone(),
        plan_digest: record.plan_digest.clone(),
        configuration: record.configuration.clone(),
        enabled_flags: record.configuration.enabled_flags(),
        steps_attempted: Vec::new(),
        program: program.to_string(),
    }
}

fn failed_steps(record: &crate::state::model::DeploymentRecord) -> Vec<String> {
    record
        .steps
        .iter()
        .filter(|s| s.status == crate::state::model::StepStatus::Failed)
        .map(|s| s.id.clone())
        .collect()
}

/// The result of a lifecycle `retry`, with a `steps_reset` event naming the steps.
fn retried<S: crate::state::lifecycle::LifecycleState>(
    result: std::result::Result<
        Deployment<InProgress>,
        (Deployment<S>, crate::state::lifecycle::TransitionError),
    >,
    events: &mut Vec<NewEvent>,
) -> Result<Deployment<InProgress>> {
    let d = result.map_err(|(_, e)| EngineError::Transition(e))?;
    let pending: Vec<&str> = d
        .record()
        .steps
        .iter()
        .filter(|s| s.status == crate::state::model::StepStatus::Pending && !s.attempts.is_empty())
        .map(|s| s.id.as_str())
        .collect();
    events.push(NewEvent::new(
        EventKind::StepsReset,
        format!("to run again: {}", pending.join(", ")),
    ));
    Ok(d)
}

/// The refusal of a `resume` or `retry` that has nothing to do, with the way on.
pub(crate) fn nothing_to(kind: RunKind, status: DeploymentStatus) -> EngineError {
    let hint = match (kind, status) {
        (RunKind::Resume, DeploymentStatus::Failed) => {
            "; run `thinkube-deploy retry` to run the failed steps again"
        }
        (_, DeploymentStatus::NotStarted) => "; run `thinkube-deploy deploy` to start one",
        _ => "",
    };
    EngineError::Usage(format!(
        "there is nothing to {}: the deployment is {}{hint}",
        kind.as_str(),
        status.as_str()
    ))
}
