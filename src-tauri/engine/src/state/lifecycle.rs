//! The deployment lifecycle as a type-state API.
//!
//! `Deployment<S>` is a deployment known to be in state `S`; its methods are the only
//! legal transitions (a `Deployment<Completed>` has no `start_step`, and a
//! `Deployment<NotStarted>` cannot be retried: see `tests/ui/`). For storage it is
//! erased into [`AnyDeployment`], whose `from_record` checks the invariants a stored
//! deployment must hold before it can be used at all.
//!
//! Every transition is logged with `tracing` at info level.

use std::collections::HashSet;
use std::marker::PhantomData;

use crate::state::bounds;
use crate::state::model::{
    Attempt, AttemptOutcome, Configuration, DeploymentRecord, DeploymentStatus, PhaseRecord,
    ProcessRef, RestartRecord, StepError, StepNotice, StepRecord, StepStatus,
};
use crate::timestamp::Timestamp;

mod sealed {
    pub trait Sealed {}
}

/// A state a deployment can be in; implemented only by the marker types below.
pub trait LifecycleState: sealed::Sealed {
    const STATUS: DeploymentStatus;
}

macro_rules! lifecycle_states {
    ($($(#[$doc:meta])* $name:ident => $status:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;
        impl sealed::Sealed for $name {}
        impl LifecycleState for $name {
            const STATUS: DeploymentStatus = DeploymentStatus::$status;
        }
    )*};
}

lifecycle_states! {
    /// Nothing has run yet.
    NotStarted => NotStarted,
    /// A process is working through the steps.
    InProgress => InProgress,
    /// Every applicable step completed.
    Completed => Completed,
    /// A step failed and nothing is running.
    Failed => Failed,
    /// Stopped before the end with no failure (killed, cancelled, blocked by a gate).
    Interrupted => Interrupted,
    /// A step asked for the machine to restart before the deployment goes on.
    AwaitingRestart => AwaitingRestart,
}

/// Why a transition was refused. The caller turns it into a user-facing error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("there is no step `{step}` in this deployment")]
    UnknownStep { step: String },
    #[error("step `{step}` is {status} and cannot be {action}")]
    WrongStepStatus {
        step: String,
        status: &'static str,
        action: &'static str,
    },
    #[error("step id `{step}` appears twice in the plan; step ids must be unique")]
    DuplicateStep { step: String },
    #[error(
        "nothing to retry: no step has failed (name steps to run them again, or use `resume` to continue)"
    )]
    NothingToRetry,
    #[error(
        "step `{step}` comes after `{failed}`, which failed, and steps run in plan order: retry both (`thinkube-deploy retry {failed} {step}`), or every failed step (`thinkube-deploy retry`)"
    )]
    AfterAFailure { step: String, failed: String },
}

/// A stored deployment that breaks an invariant; loading refuses it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvariantViolation(pub String);

/// A deployment in lifecycle state `S`.
#[derive(Debug)]
pub struct Deployment<S: LifecycleState> {
    // Boxed so a refused transition's `Err((Self, error))` stays small.
    record: Box<DeploymentRecord>,
    /// Where the last step looked up was: a run changes one step several times,
    /// then the next one, so a lookup starts there instead of at the first step.
    hint: usize,
    _state: PhantomData<S>,
}

impl<S: LifecycleState> Deployment<S> {
    /// The stored form, read-only.
    pub fn record(&self) -> &DeploymentRecord {
        &self.record
    }

    /// Erases the state type for storage.
    pub fn erase(self) -> AnyDeployment {
        AnyDeployment::wrap(*self.record)
    }

    fn wrap(mut record: DeploymentRecord) -> Self {
        record.status = S::STATUS;
        Self {
            record: Box::new(record),
            hint: 0,
            _state: PhantomData,
        }
    }

    /// Moves to state `T`, logging the transition.
    fn transition<T: LifecycleState>(self, why: &str) -> Deployment<T> {
        tracing::info!(
            deployment = self.record.id.as_deref().unwrap_or("-"),
            from = S::STATUS.as_str(),
            to = T::STATUS.as_str(),
            why,
            "deployment transition"
        );
        Deployment::wrap(*self.record)
    }

    /// Archives nothing itself: returns the record as it was (for the caller to
    /// archive) and a fresh deployment that keeps only the configuration.
    pub fn clean(self) -> (DeploymentRecord, Deployment<NotStarted>) {
        let kept = self.record.configuration.clone();
        let old = *self.record;
        tracing::info!(
            deployment = old.id.as_deref().unwrap_or("-"),
            from = S::STATUS.as_str(),
            to = "not_started",
            why = "clean-state",
            "deployment transition"
        );
        (old, Deployment::wrap(DeploymentRecord::empty(kept)))
    }

    fn step_mut(&mut self, id: &str) -> Result<&mut StepRecord, TransitionError> {
        let steps = &self.record.steps;
        let at = |i: usize| steps.get(i).is_some_and(|s| s.id == id);
        let index = [self.hint, self.hint + 1]
            .into_iter()
            .find(|i| at(*i))
            .or_else(|| steps.iter().position(|s| s.id == id))
            .ok_or_else(|| TransitionError::UnknownStep {
                step: id.to_string(),
            })?;
        self.hint = index;
        Ok(&mut self.record.steps[index])
    }

    /// Marks steps pending again so they run: the named ones (any status but
    /// skipped or running), or when none are named every failed step.
    fn reset_steps(&mut self, named: &[String]) -> Result<Vec<String>, TransitionError> {
        let targets: Vec<String> = if named.is_empty() {
            self.record
                .steps
                .iter()
                .filter(|s| s.status == StepStatus::Failed)
                .map(|s| s.id.clone())
                .collect()
        } else {
            named.to_vec()
        };
        if targets.is_empty() {
            return Err(TransitionError::NothingToRetry);
        }
        // Check every target before changing any, so a bad name changes nothing.
        for id in &targets {
            let step = self
                .record
                .step(id)
                .ok_or_else(|| TransitionError::UnknownStep { step: id.clone() })?;
            if matches!(step.status, StepStatus::Skipped | StepStatus::Running) {
                return Err(TransitionError::WrongStepStatus {
                    step: id.clone(),
                    status: step.status.as_str(),
                    action: "retried",
                });
            }
            let earlier_failure = self
                .record
                .steps
                .iter()
                .take_while(|s| s.id != *id)
                .find(|s| s.status == StepStatus::Failed && !targets.contains(&s.id));
            if let Some(failed) = earlier_failure {
                return Err(TransitionError::AfterAFailure {
                    step: id.clone(),
                    failed: failed.id.clone(),
                });
            }
        }
        for id in &targets {
            let step = self.step_mut(id)?;
            tracing::info!(
                step = id.as_str(),
                from = step.status.as_str(),
                to = "pending",
                "step reset for retry"
            );
            step.status = StepStatus::Pending;
        }
        Ok(targets)
    }
}

/// A plan turned into the steps a new deployment starts with.
#[derive(Debug, Clone)]
pub struct PlannedDeployment {
    pub id: String,
    pub plan_id: String,
    /// A built-in plan's name or a plan file's path, to find the plan again.
    pub plan_source: Option<String>,
    pub plan_digest: String,
    pub configuration: Configuration,
    pub phases: Vec<PhaseRecord>,
    pub steps: Vec<PlannedStep>,
}

/// One step of a plan, with whether it applies.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub id: String,
    pub phase: String,
    pub title: String,
    pub source: Option<String>,
    pub definition_digest: Option<String>,
    /// `Some(reason)` when the step does not apply (it is recorded as skipped).
    pub skip_reason: Option<String>,
}

impl Deployment<NotStarted> {
    /// A deployment with nothing in it, keeping `configuration`.
    pub fn empty(configuration: Configuration) -> Self {
        Self::wrap(DeploymentRecord::empty(configuration))
    }

    /// Starts the deployment of a plan: applicable steps become pending, the others
    /// skipped with their reason.
    pub fn start(
        mut self,
        plan: PlannedDeployment,
        now: Timestamp,
    ) -> Result<Deployment<InProgress>, TransitionError> {
        let mut seen = HashSet::new();
        for step in &plan.steps {
            if !seen.insert(step.id.as_str()) {
                return Err(TransitionError::DuplicateStep {
                    step: step.id.clone(),
                });
            }
        }
        let r = &mut self.record;
        r.id = Some(plan.id);
        r.plan_id = Some(plan.plan_id);
        r.plan_source = plan.plan_source;
        r.plan_digest = Some(plan.plan_digest);
        r.configuration = plan.configuration;
        r.phases = plan.phases;
        r.started_at = Some(now);
        r.finished_at = None;
        r.restart = None;
        r.steps = plan
            .steps
            .into_iter()
            .map(|p| {
                let mut step = StepRecord::new(&p.id, &p.phase, &p.title);
                step.source = p.source;
                step.definition_digest = p.definition_digest;
                if let Some(reason) = p.skip_reason {
                    step.status = StepStatus::Skipped;
                    step.skip_reason = Some(reason);
                }
                step
            })
            .collect();
        Ok(self.transition("deployment started"))
    }
}

/// Where a deployment stands once a run stops working on it.
#[derive(Debug)]
pub enum Settled {
    Completed(Deployment<Completed>),
    Failed(Deployment<Failed>),
    Interrupted(Deployment<Interrupted>),
}

impl Settled {
    pub fn erase(self) -> AnyDeployment {
        match self {
            Settled::Completed(d) => d.erase(),
            Settled::Failed(d) => d.erase(),
            Settled::Interrupted(d) => d.erase(),
        }
    }
}

impl Deployment<InProgress> {
    /// The first step (in plan order) that still has to run: pending or interrupted.
    /// The first step in plan order that is to run, unless a failed step comes
    /// before it: plan order holds, nothing runs past a failure.
    pub fn next_runnable(&self) -> Option<&StepRecord> {
        self.next_runnable_from(0).map(|(_, s)| s)
    }

    /// [`Deployment::next_runnable`], looking from step `start` on (the steps before
    /// it are known to be done), with its index.
    pub(crate) fn next_runnable_from(&self, start: usize) -> Option<(usize, &StepRecord)> {
        self.record
            .steps
            .iter()
            .enumerate()
            .skip(start)
            .find(|(_, s)| {
                matches!(
                    s.status,
                    StepStatus::Pending | StepStatus::Interrupted | StepStatus::Failed
                )
            })
            .filter(|(_, s)| s.status != StepStatus::Failed)
    }

    /// Records that a step starts: a new `running` attempt. Returns its number.
    pub fn start_step(
        &mut self,
        step_id: &str,
        run_id: &str,
        process: Option<ProcessRef>,
        log_file: Option<String>,
        now: Timestamp,
    ) -> Result<u32, TransitionError> {
        let step = self.step_mut(step_id)?;
        if !matches!(step.status, StepStatus::Pending | StepStatus::Interrupted) {
            return Err(TransitionError::WrongStepStatus {
                step: step_id.to_string(),
                status: step.status.as_str(),
                action: "started",
            });
        }
        let number = step.attempts.len() as u32 + 1;
        step.attempts.push(Attempt {
            number,
            run_id: Some(run_id.to_string()),
            started_at: Some(now),
            finished_at: None,
            outcome: AttemptOutcome::Running,
            process,
            error: None,
            log_file,
        });
        step.status = StepStatus::Running;
        tracing::info!(step = step_id, attempt = number, "step running");
        Ok(number)
    }

    /// Records the definition a step is about to run (its digest), clearing a
    /// "changed since it ran" notice: from now on it ran this definition.
    pub(crate) fn record_definition(
        &mut self,
        step_id: &str,
        digest: &str,
    ) -> Result<(), TransitionError> {
        let step = self.step_mut(step_id)?;
        step.definition_digest = Some(digest.to_string());
        step.notice = None;
        Ok(())
    }

    /// Records the pid of the process running a step once it has been spawned.
    pub(crate) fn set_step_process(
        &mut self,
        step_id: &str,
        process: ProcessRef,
    ) -> Result<(), TransitionError> {
        let attempt = self.running_attempt(step_id, "given a process")?;
        attempt.process = Some(process);
        Ok(())
    }

    /// Makes a step that just failed runnable again within the same run (an
    /// automatic retry). Its failed attempt stays in its history.
    pub(crate) fn rerun_failed_step(&mut self, step_id: &str) -> Result<(), TransitionError> {
        let step = self.step_mut(step_id)?;
        if step.status != StepStatus::Failed {
            return Err(TransitionError::WrongStepStatus {
                step: step_id.to_string(),
                status: step.status.as_str(),
                action: "retried automatically",
            });
        }
        step.status = StepStatus::Pending;
        tracing::info!(step = step_id, "automatic retry");
        Ok(())
    }

    /// The step's process exited successfully.
    pub fn complete_step(&mut self, step_id: &str, now: Timestamp) -> Result<(), TransitionError> {
        self.finish_attempt(step_id, AttemptOutcome::Success, None, now)
    }

    /// The step failed (after its automatic retries, if any).
    pub fn fail_step(
        &mut self,
        step_id: &str,
        error: StepError,
        now: Timestamp,
    ) -> Result<(), TransitionError> {
        self.finish_attempt(step_id, AttemptOutcome::Failed, Some(error), now)
    }

    fn running_attempt(
        &mut self,
        step_id: &str,
        action: &'static str,
    ) -> Result<&mut Attempt, TransitionError> {
        let step = self.step_mut(step_id)?;
        let status = step.status;
        match step.attempts.last_mut() {
            Some(a) if status == StepStatus::Running && a.outcome == AttemptOutcome::Running => {
                Ok(a)
            }
            _ => Err(TransitionError::WrongStepStatus {
                step: step_id.to_string(),
                status: status.as_str(),
                action,
            }),
        }
    }

    fn finish_attempt(
        &mut self,
        step_id: &str,
        outcome: AttemptOutcome,
        error: Option<StepError>,
        now: Timestamp,
    ) -> Result<(), TransitionError> {
        let action = match outcome {
            AttemptOutcome::Success => "completed",
            AttemptOutcome::Failed => "failed",
            _ => "interrupted",
        };
        let attempt = self.running_attempt(step_id, action)?;
        attempt.outcome = outcome;
        attempt.finished_at = Some(now);
        attempt.process = None;
        attempt.error = error.map(bounds::step_error);
        let status = match outcome {
            AttemptOutcome::Success => StepStatus::Completed,
            AttemptOutcome::Failed => StepStatus::Failed,
            _ => StepStatus::Interrupted,
        };
        let step = self.step_mut(step_id)?;
        step.status = status;
        bounds::drop_older_tails(step);
        tracing::info!(step = step_id, to = status.as_str(), "step finished");
        Ok(())
    }

    /// Marks every running step whose process `is_gone` interrupted. Used on load:
    /// a writer holds the lock, so a running step left in the file belongs to a
    /// process that died without recording its end.
    pub(crate) fn interrupt_dead_steps(
        &mut self,
        is_gone: impl Fn(Option<ProcessRef>) -> bool,
        now: Timestamp,
    ) -> Vec<String> {
        let mut interrupted = Vec::new();
        for step in &mut self.record.steps {
            if step.status != StepStatus::Running {
                continue;
            }
            let Some(attempt) = step.attempts.last_mut() else {
                continue;
            };
            if is_gone(attempt.process) {
                attempt.outcome = AttemptOutcome::Interrupted;
                attempt.finished_at = Some(now);
                attempt.process = None;
                step.status = StepStatus::Interrupted;
                tracing::info!(
                    step = step.id.as_str(),
                    "running step's process is gone: interrupted"
                );
                interrupted.push(step.id.clone());
            }
        }
        interrupted
    }

    /// Whether any step is still running.
    pub(crate) fn has_running(&self) -> bool {
        self.record
            .steps
            .iter()
            .any(|s| s.status == StepStatus::Running)
    }

    /// The run stopped working on the deployment: running steps become interrupted,
    /// then the outcome follows from the steps. A failed step means `Failed`, never
    /// `Completed`.
    pub fn settle(mut self, now: Timestamp) -> Settled {
        self.interrupt_dead_steps(|_| true, now);
        let r = &self.record;
        if r.steps.iter().any(|s| s.status == StepStatus::Failed) {
            return Settled::Failed(self.transition("a step failed"));
        }
        let done = r
            .steps
            .iter()
            .all(|s| matches!(s.status, StepStatus::Completed | StepStatus::Skipped));
        if done {
            self.record.finished_at = Some(now);
            return Settled::Completed(self.transition("every step completed or was skipped"));
        }
        Settled::Interrupted(self.transition("stopped before the end"))
    }

    /// A completed step asked for a restart: wait for it before going on.
    pub fn await_restart(
        self,
        step_id: &str,
        boot_id: Option<String>,
        now: Timestamp,
    ) -> Result<Deployment<AwaitingRestart>, (Self, TransitionError)> {
        if self.has_running() {
            let err = TransitionError::WrongStepStatus {
                step: step_id.to_string(),
                status: "running",
                action: "followed by a restart while another step runs",
            };
            return Err((self, err));
        }
        let mut next: Deployment<AwaitingRestart> = self.transition("a step requires a restart");
        next.record.restart = Some(RestartRecord {
            step: Some(step_id.to_string()),
            boot_id,
            requested_at: Some(now),
        });
        Ok(next)
    }
}

impl Deployment<Failed> {
    /// Marks the failed steps (or the named ones) pending and continues.
    pub fn retry(
        mut self,
        named: &[String],
    ) -> Result<Deployment<InProgress>, (Self, TransitionError)> {
        match self.reset_steps(named) {
            Ok(_) => Ok(self.transition("retry")),
            Err(e) => Err((self, e)),
        }
    }
}

impl Deployment<Interrupted> {
    /// Continues where the deployment stopped: interrupted steps run again.
    pub fn resume(self) -> Deployment<InProgress> {
        self.transition("resume")
    }

    /// Runs named steps again (completed ones included), then continues.
    pub fn retry(
        mut self,
        named: &[String],
    ) -> Result<Deployment<InProgress>, (Self, TransitionError)> {
        match self.reset_steps(named) {
            Ok(_) => Ok(self.transition("retry")),
            Err(e) => Err((self, e)),
        }
    }
}

impl Deployment<Completed> {
    /// Runs named completed steps again. With no names there is nothing to retry.
    pub fn retry(
        mut self,
        named: &[String],
    ) -> Result<Deployment<InProgress>, (Self, TransitionError)> {
        if named.is_empty() {
            return Err((self, TransitionError::NothingToRetry));
        }
        match self.reset_steps(named) {
            Ok(_) => Ok(self.transition("retry of named steps")),
            Err(e) => Err((self, e)),
        }
    }
}

/// The restart a deployment waits for has not happened yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the machine has not restarted since step `{step}` asked for it (boot id is still {boot_id}); restart it, then run deploy again"
)]
pub struct RestartStillDue {
    pub step: String,
    pub boot_id: String,
}

impl Deployment<AwaitingRestart> {
    /// Continues once the machine has restarted: `current_boot_id` must differ from
    /// the one recorded (an unknown recorded boot id is taken as restarted).
    pub(crate) fn continue_after_restart(
        mut self,
        current_boot_id: &str,
    ) -> Result<Deployment<InProgress>, (Self, RestartStillDue)> {
        if let Some(restart) = &self.record.restart
            && restart.boot_id.as_deref() == Some(current_boot_id)
        {
            let err = RestartStillDue {
                step: restart.step.clone().unwrap_or_default(),
                boot_id: current_boot_id.to_string(),
            };
            return Err((self, err));
        }
        self.record.restart = None;
        Ok(self.transition("machine restarted"))
    }
}

/// A deployment in any state: the form that is stored and loaded.
#[derive(Debug)]
pub enum AnyDeployment {
    NotStarted(Deployment<NotStarted>),
    InProgress(Deployment<InProgress>),
    Completed(Deployment<Completed>),
    Failed(Deployment<Failed>),
    Interrupted(Deployment<Interrupted>),
    AwaitingRestart(Deployment<AwaitingRestart>),
}

macro_rules! each_state {
    ($value:expr, $d:ident => $body:expr) => {
        match $value {
            AnyDeployment::NotStarted($d) => $body,
            AnyDeployment::InProgress($d) => $body,
            AnyDeployment::Completed($d) => $body,
            AnyDeployment::Failed($d) => $body,
            AnyDeployment::Interrupted($d) => $body,
            AnyDeployment::AwaitingRestart($d) => $body,
        }
    };
}

/// How a deployment's steps changed to match a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PlanChanges {
    /// Steps new in the plan (pending, or skipped if they do not apply).
    pub added: Vec<String>,
    /// Steps no longer in the plan, removed from the list (recorded in the trail).
    pub removed: Vec<String>,
    /// Completed steps whose definition changed: kept completed, marked, not re-run.
    pub changed_since_run: Vec<String>,
    /// Skipped steps that apply now (a flag was turned on): pending.
    pub now_applicable: Vec<String>,
    /// Steps that no longer apply: skipped, or kept completed and marked.
    pub no_longer_applicable: Vec<String>,
}

impl PlanChanges {
    pub fn is_empty(&self) -> bool {
        self == &PlanChanges::default()
    }

    /// One sentence per kind of change, for the trail and the user.
    pub(crate) fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (list, what) in [
            (&self.added, "new in the plan"),
            (&self.removed, "removed from the plan"),
            (
                &self.changed_since_run,
                "changed since they ran (not run again; name them to `retry` to run them)",
            ),
            (&self.now_applicable, "now enabled"),
            (&self.no_longer_applicable, "no longer enabled"),
        ] {
            if !list.is_empty() {
                out.push(format!("{what}: {}", list.join(", ")));
            }
        }
        out
    }
}

impl AnyDeployment {
    /// Matches a started deployment's steps to `plan` by id (see [`PlanChanges`]),
    /// takes the plan's digest, phases and configuration, and derives the status
    /// again. Attempts are never dropped; a removed step's are in the trail.
    /// A deployment that has not started is returned as it is.
    pub(crate) fn replan(
        self,
        plan: &PlannedDeployment,
    ) -> (AnyDeployment, PlanChanges, Vec<StepRecord>) {
        let mut changes = PlanChanges::default();
        // Not started: the plan is applied by `start`. A step still running (its
        // process outlived its runner): nothing may change until it ends.
        let running = self
            .record()
            .steps
            .iter()
            .any(|s| s.status == StepStatus::Running);
        if matches!(self, AnyDeployment::NotStarted(_)) || running {
            return (self, changes, Vec::new());
        }
        let from = self.status();
        let mut record = self.into_record();
        let mut old: Vec<StepRecord> = std::mem::take(&mut record.steps);
        let mut steps = Vec::with_capacity(plan.steps.len());
        for p in &plan.steps {
            let step = match old.iter().position(|s| s.id == p.id) {
                Some(i) => {
                    let mut s = old.remove(i);
                    s.phase = p.phase.clone();
                    s.title = p.title.clone();
                    s.source = p.source.clone();
                    match (&p.skip_reason, s.status) {
                        (Some(reason), StepStatus::Completed) => {
                            if s.notice.is_none() {
                                changes.no_longer_applicable.push(s.id.clone());
                            }
                            s.notice = Some(StepNotice::NoLongerEnabled(reason.clone()).text());
                        }
                        (Some(reason), StepStatus::Skipped) => s.skip_reason = Some(reason.clone()),
                        (Some(reason), _) => {
                            changes.no_longer_applicable.push(s.id.clone());
                            s.status = StepStatus::Skipped;
                            s.skip_reason = Some(reason.clone());
                        }
                        (None, StepStatus::Skipped) => {
                            changes.now_applicable.push(s.id.clone());
                            s.status = StepStatus::Pending;
                            s.skip_reason = None;
                            s.definition_digest = p.definition_digest.clone();
                        }
                        (None, StepStatus::Completed) => {
                            let changed = p.definition_digest.is_some()
                                && s.definition_digest.is_some()
                                && p.definition_digest != s.definition_digest;
                            if changed {
                                let notice = s.notice.as_deref().and_then(StepNotice::parse);
                                if notice != Some(StepNotice::ChangedSinceRun) {
                                    changes.changed_since_run.push(s.id.clone());
                                }
                                s.notice = Some(StepNotice::ChangedSinceRun.text());
                            } else if let Some(StepNotice::NoLongerEnabled(_)) =
                                s.notice.as_deref().and_then(StepNotice::parse)
                            {
                                s.notice = None;
                            }
                        }
                        (None, _) => s.definition_digest = p.definition_digest.clone(),
                    }
                    s
                }
                None => {
                    changes.added.push(p.id.clone());
                    let mut s = StepRecord::new(&p.id, &p.phase, &p.title);
                    s.source = p.source.clone();
                    s.definition_digest = p.definition_digest.clone();
                    if let Some(reason) = &p.skip_reason {
                        s.status = StepStatus::Skipped;
                        s.skip_reason = Some(reason.clone());
                    }
                    s
                }
            };
            steps.push(step);
        }
        changes.removed = old.iter().map(|s| s.id.clone()).collect();
        record.steps = steps;
        record.phases = plan.phases.clone();
        record.plan_digest = Some(plan.plan_digest.clone());
        record.plan_source = plan.plan_source.clone();
        record.configuration = plan.configuration.clone();
        let any = |st: StepStatus| record.steps.iter().any(|s| s.status == st);
        let all_done = record
            .steps
            .iter()
            .all(|s| matches!(s.status, StepStatus::Completed | StepStatus::Skipped));
        record.status = if any(StepStatus::Failed) {
            DeploymentStatus::Failed
        } else if from == DeploymentStatus::AwaitingRestart {
            DeploymentStatus::AwaitingRestart
        } else if all_done {
            DeploymentStatus::Completed
        } else {
            DeploymentStatus::Interrupted
        };
        if record.status != DeploymentStatus::Completed {
            record.finished_at = None;
        }
        if !changes.is_empty() {
            tracing::info!(
                deployment = record.id.as_deref().unwrap_or("-"),
                from = from.as_str(),
                to = record.status.as_str(),
                why = "plan changed",
                "deployment transition"
            );
        }
        (AnyDeployment::wrap(record), changes, old)
    }

    /// Wraps a record by its stored status without checking it (internal: callers
    /// outside go through `from_record`).
    fn wrap(record: DeploymentRecord) -> Self {
        match record.status {
            DeploymentStatus::NotStarted => Self::NotStarted(Deployment::wrap(record)),
            DeploymentStatus::InProgress => Self::InProgress(Deployment::wrap(record)),
            DeploymentStatus::Completed => Self::Completed(Deployment::wrap(record)),
            DeploymentStatus::Failed => Self::Failed(Deployment::wrap(record)),
            DeploymentStatus::Interrupted => Self::Interrupted(Deployment::wrap(record)),
            DeploymentStatus::AwaitingRestart => Self::AwaitingRestart(Deployment::wrap(record)),
        }
    }

    /// Checks a stored deployment's invariants and types it by its status.
    pub fn from_record(record: DeploymentRecord) -> Result<Self, InvariantViolation> {
        check_invariants(&record)?;
        Ok(Self::wrap(record))
    }

    pub fn record(&self) -> &DeploymentRecord {
        each_state!(self, d => d.record())
    }

    pub fn into_record(self) -> DeploymentRecord {
        each_state!(self, d => *d.record)
    }

    pub fn status(&self) -> DeploymentStatus {
        self.record().status
    }

    /// Archives progress: the old record and a fresh deployment keeping configuration.
    pub fn clean(self) -> (DeploymentRecord, Deployment<NotStarted>) {
        each_state!(self, d => d.clean())
    }
    /// `validate --reset-affected`: step `from` and every later step that has run are
    /// pending again, so the next resume runs them. The deployment becomes
    /// interrupted (failed, if an earlier step failed). Refused while a step runs or
    /// before the deployment started; returns the steps reset.
    pub(crate) fn reset_from(
        self,
        from: &str,
    ) -> Result<(Self, Vec<String>), (Self, TransitionError)> {
        let status = self.status();
        let refuse = |d: Self, e| Err((d, e));
        if matches!(status, DeploymentStatus::NotStarted)
            || self
                .record()
                .steps
                .iter()
                .any(|s| s.status == StepStatus::Running)
        {
            return refuse(
                self,
                TransitionError::WrongStepStatus {
                    step: from.to_string(),
                    status: status.as_str(),
                    action: "reset (the deployment must have started and have no running step)",
                },
            );
        }
        let Some(index) = self.record().steps.iter().position(|s| s.id == from) else {
            return refuse(
                self,
                TransitionError::UnknownStep {
                    step: from.to_string(),
                },
            );
        };
        let mut record = self.into_record();
        let mut reset = Vec::new();
        for step in record.steps.iter_mut().skip(index) {
            if matches!(
                step.status,
                StepStatus::Completed | StepStatus::Failed | StepStatus::Interrupted
            ) {
                step.status = StepStatus::Pending;
                reset.push(step.id.clone());
            }
        }
        record.restart = None;
        record.finished_at = None;
        let failed = record.steps.iter().any(|s| s.status == StepStatus::Failed);
        record.status = if failed {
            DeploymentStatus::Failed
        } else if record
            .steps
            .iter()
            .all(|s| matches!(s.status, StepStatus::Completed | StepStatus::Skipped))
        {
            DeploymentStatus::Completed
        } else {
            DeploymentStatus::Interrupted
        };
        tracing::info!(from, steps = reset.len(), "steps reset by validate");
        Ok((Self::wrap(record), reset))
    }
}

/// Checks a stored deployment's invariants without taking it (see `from_record`).
pub(crate) fn check_invariants(r: &DeploymentRecord) -> Result<(), InvariantViolation> {
    let mut seen = HashSet::new();
    for step in &r.steps {
        if !seen.insert(step.id.as_str()) {
            return Err(InvariantViolation(format!(
                "step id `{}` appears more than once",
                step.id
            )));
        }
        check_step(step)?;
    }
    check_status(r)
}

/// [`check_invariants`] after a change of only the `changed` steps of a deployment
/// that held them (step ids do not change): those steps and the deployment's status.
pub(crate) fn check_changed(
    r: &DeploymentRecord,
    changed: &[&StepRecord],
) -> Result<(), InvariantViolation> {
    changed.iter().try_for_each(|s| check_step(s))?;
    check_status(r)
}

fn check_step(step: &StepRecord) -> Result<(), InvariantViolation> {
    let last_running = step
        .attempts
        .last()
        .is_some_and(|a| a.outcome == AttemptOutcome::Running);
    let running_attempts = step
        .attempts
        .iter()
        .filter(|a| a.outcome == AttemptOutcome::Running)
        .count();
    if (step.status == StepStatus::Running) != last_running || running_attempts > 1 {
        return Err(InvariantViolation(format!(
            "step `{}` is {} but its attempts say otherwise",
            step.id,
            step.status.as_str()
        )));
    }
    Ok(())
}

fn check_status(r: &DeploymentRecord) -> Result<(), InvariantViolation> {
    let fail = |msg: String| Err(InvariantViolation(msg));
    let any = |st: StepStatus| r.steps.iter().any(|s| s.status == st);
    let all_done = || {
        r.steps
            .iter()
            .all(|s| matches!(s.status, StepStatus::Completed | StepStatus::Skipped))
    };
    let status = r.status.as_str();
    match r.status {
        DeploymentStatus::NotStarted => {
            if r.steps.iter().any(|s| !s.attempts.is_empty()) {
                return fail("the deployment is not_started but a step has attempts".into());
            }
        }
        DeploymentStatus::InProgress => {}
        DeploymentStatus::Completed => {
            if let Some(s) = r
                .steps
                .iter()
                .find(|s| !matches!(s.status, StepStatus::Completed | StepStatus::Skipped))
            {
                return fail(format!(
                    "the deployment is completed but step `{}` is {}",
                    s.id,
                    s.status.as_str()
                ));
            }
        }
        DeploymentStatus::Failed => {
            if !any(StepStatus::Failed) || any(StepStatus::Running) {
                return fail(
                    "the deployment is failed but no step failed, or one is still running".into(),
                );
            }
        }
        DeploymentStatus::Interrupted | DeploymentStatus::AwaitingRestart => {
            if any(StepStatus::Running) || any(StepStatus::Failed) {
                return fail(format!(
                    "the deployment is {status} but a step is running or failed"
                ));
            }
            if r.status == DeploymentStatus::Interrupted && !r.steps.is_empty() && all_done() {
                return fail("the deployment is interrupted but every step is done".into());
            }
            if r.status == DeploymentStatus::AwaitingRestart && r.restart.is_none() {
                return fail(
                    "the deployment is awaiting_restart but says nothing of the restart".into(),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::parse("2026-01-01T00:00:00Z").unwrap()
    }

    fn plan(steps: &[(&str, Option<&str>)]) -> PlannedDeployment {
        PlannedDeployment {
            id: "d-1".into(),
            plan_id: "demo".into(),
            plan_source: None,
            plan_digest: "sha256:x".into(),
            configuration: Configuration::default(),
            phases: vec![PhaseRecord {
                id: "p".into(),
                title: "Phase".into(),
            }],
            steps: steps
                .iter()
                .map(|(id, skip)| PlannedStep {
                    id: id.to_string(),
                    phase: "p".into(),
                    title: id.to_uppercase(),
                    source: None,
                    definition_digest: None,
                    skip_reason: skip.map(str::to_string),
                })
                .collect(),
        }
    }

    fn started(steps: &[(&str, Option<&str>)]) -> Deployment<InProgress> {
        Deployment::empty(Configuration::default())
            .start(plan(steps), now())
            .unwrap()
    }

    fn statuses(d: &DeploymentRecord) -> Vec<(&str, &str)> {
        d.steps
            .iter()
            .map(|s| (s.id.as_str(), s.status.as_str()))
            .collect()
    }

    #[test]
    fn start_marks_inapplicable_steps_skipped_with_their_reason() {
        let d = started(&[("a", None), ("gpu", Some("flag gpu is off"))]);
        assert_eq!(statuses(d.record()), [("a", "pending"), ("gpu", "skipped")]);
        assert_eq!(
            d.record().steps[1].skip_reason.as_deref(),
            Some("flag gpu is off")
        );
        assert_eq!(d.record().status, DeploymentStatus::InProgress);
    }

    #[test]
    fn duplicate_step_ids_are_refused() {
        let err = Deployment::empty(Configuration::default())
            .start(plan(&[("a", None), ("a", None)]), now())
            .unwrap_err();
        assert_eq!(err, TransitionError::DuplicateStep { step: "a".into() });
    }

    #[test]
    fn a_failed_step_settles_as_failed_never_completed() {
        let mut d = started(&[("a", None), ("b", None)]);
        d.start_step("a", "r1", None, None, now()).unwrap();
        d.complete_step("a", now()).unwrap();
        d.start_step("b", "r1", None, None, now()).unwrap();
        d.fail_step("b", StepError::message("boom"), now()).unwrap();
        let Settled::Failed(failed) = d.settle(now()) else {
            panic!("expected failed")
        };
        assert_eq!(failed.record().status, DeploymentStatus::Failed);
        assert_eq!(
            failed.record().steps[1].last_error().unwrap().message,
            "boom"
        );
    }

    #[test]
    fn retry_resets_only_failed_steps_and_keeps_attempt_history() {
        let mut d = started(&[("a", None), ("b", None)]);
        d.start_step("a", "r1", None, None, now()).unwrap();
        d.complete_step("a", now()).unwrap();
        d.start_step("b", "r1", None, None, now()).unwrap();
        d.fail_step("b", StepError::message("boom"), now()).unwrap();
        let Settled::Failed(failed) = d.settle(now()) else {
            panic!()
        };
        let mut again = failed.retry(&[]).unwrap();
        assert_eq!(
            statuses(again.record()),
            [("a", "completed"), ("b", "pending")]
        );
        assert_eq!(again.next_runnable().unwrap().id, "b");
        assert_eq!(again.start_step("b", "r2", None, None, now()).unwrap(), 2);
        assert_eq!(again.record().steps[1].attempts.len(), 2);
    }

    #[test]
    fn retry_with_a_bad_name_changes_nothing() {
        let mut d = started(&[("a", None), ("b", None)]);
        d.start_step("a", "r1", None, None, now()).unwrap();
        d.fail_step("a", StepError::message("boom"), now()).unwrap();
        let Settled::Failed(failed) = d.settle(now()) else {
            panic!()
        };
        let (back, err) = failed.retry(&["a".into(), "nope".into()]).unwrap_err();
        assert_eq!(
            err,
            TransitionError::UnknownStep {
                step: "nope".into()
            }
        );
        assert_eq!(statuses(back.record()), [("a", "failed"), ("b", "pending")]);
    }

    /// `retry c` ran a pending c while an earlier b was still failed. A named step
    /// after an untouched failure is refused, and a run never passes a failed step.
    #[test]
    fn a_retry_never_runs_a_step_past_an_earlier_failure() {
        let failed_at_b = || {
            let mut d = started(&[("a", None), ("b", None), ("c", None)]);
            d.start_step("a", "r1", None, None, now()).unwrap();
            d.complete_step("a", now()).unwrap();
            d.start_step("b", "r1", None, None, now()).unwrap();
            d.fail_step("b", StepError::message("boom"), now()).unwrap();
            let Settled::Failed(failed) = d.settle(now()) else {
                panic!()
            };
            failed
        };
        let (back, err) = failed_at_b().retry(&["c".into()]).unwrap_err();
        assert_eq!(
            err,
            TransitionError::AfterAFailure {
                step: "c".into(),
                failed: "b".into()
            }
        );
        assert!(
            err.to_string().contains("thinkube-deploy retry b c"),
            "{err}"
        );
        assert_eq!(
            statuses(back.record()),
            [("a", "completed"), ("b", "failed"), ("c", "pending")]
        );
        // Both named: b first.
        let both = failed_at_b().retry(&["c".into(), "b".into()]).unwrap();
        assert_eq!(both.next_runnable().unwrap().id, "b");
        // An earlier completed step run again: it runs, and nothing after the
        // failed b does.
        let mut again = failed_at_b().retry(&["a".into()]).unwrap();
        assert_eq!(again.next_runnable().unwrap().id, "a");
        again.start_step("a", "r2", None, None, now()).unwrap();
        again.complete_step("a", now()).unwrap();
        assert!(again.next_runnable().is_none(), "ran past the failed b");
    }

    #[test]
    fn a_dead_running_step_becomes_interrupted_and_resume_runs_it_again() {
        let mut d = started(&[("a", None)]);
        let process = ProcessRef {
            pid: 42,
            start_ticks: Some(7),
        };
        d.start_step("a", "r1", Some(process), None, now()).unwrap();
        let gone = d.interrupt_dead_steps(|p| p == Some(process), now());
        assert_eq!(gone, ["a"]);
        let Settled::Interrupted(i) = d.settle(now()) else {
            panic!()
        };
        let resumed = i.resume();
        assert_eq!(resumed.next_runnable().unwrap().id, "a");
        assert_eq!(
            resumed.record().steps[0].attempts[0].outcome,
            AttemptOutcome::Interrupted
        );
    }

    #[test]
    fn completing_all_steps_settles_completed_and_named_retry_reruns_one() {
        let mut d = started(&[("a", None), ("b", Some("off"))]);
        d.start_step("a", "r1", None, None, now()).unwrap();
        d.complete_step("a", now()).unwrap();
        let Settled::Completed(c) = d.settle(now()) else {
            panic!()
        };
        let (c, err) = c.retry(&[]).unwrap_err();
        assert_eq!(err, TransitionError::NothingToRetry);
        let (c, err) = c.retry(&["b".into()]).unwrap_err();
        assert!(matches!(
            err,
            TransitionError::WrongStepStatus {
                status: "skipped",
                ..
            }
        ));
        let again = c.retry(&["a".into()]).unwrap();
        assert_eq!(
            statuses(again.record()),
            [("a", "pending"), ("b", "skipped")]
        );
    }

    #[test]
    fn restart_must_change_the_boot_id() {
        let mut d = started(&[("a", None), ("b", None)]);
        d.start_step("a", "r1", None, None, now()).unwrap();
        d.complete_step("a", now()).unwrap();
        let waiting = d.await_restart("a", Some("boot-1".into()), now()).unwrap();
        let (waiting, err) = waiting.continue_after_restart("boot-1").unwrap_err();
        assert_eq!(err.step, "a");
        let going = waiting.continue_after_restart("boot-2").unwrap();
        assert!(going.record().restart.is_none());
        assert_eq!(going.next_runnable().unwrap().id, "b");
    }

    #[test]
    fn steps_cannot_finish_twice_or_start_while_running() {
        let mut d = started(&[("a", None)]);
        d.start_step("a", "r1", None, None, now()).unwrap();
        assert!(d.start_step("a", "r1", None, None, now()).is_err());
        d.complete_step("a", now()).unwrap();
        assert!(d.complete_step("a", now()).is_err());
        assert!(d.fail_step("a", StepError::message("x"), now()).is_err());
        assert!(d.start_step("zzz", "r1", None, None, now()).is_err());
    }

    fn check(status: DeploymentStatus, steps: &[StepStatus]) -> Result<(), String> {
        let mut r = DeploymentRecord::empty(Configuration::default());
        r.status = status;
        r.restart = Some(RestartRecord {
            step: None,
            boot_id: None,
            requested_at: None,
        });
        for (i, st) in steps.iter().enumerate() {
            let mut s = StepRecord::new(&format!("s{i}"), "p", "t");
            s.status = *st;
            if *st == StepStatus::Running {
                s.attempts.push(Attempt {
                    number: 1,
                    run_id: None,
                    started_at: None,
                    finished_at: None,
                    outcome: AttemptOutcome::Running,
                    process: None,
                    error: None,
                    log_file: None,
                });
            }
            r.steps.push(s);
        }
        AnyDeployment::from_record(r).map(|_| ()).map_err(|e| e.0)
    }

    #[test]
    fn stored_status_must_agree_with_the_steps() {
        use DeploymentStatus as D;
        use StepStatus as S;
        // Table: (stored status, steps, accepted?)
        let cases: &[(D, &[S], bool)] = &[
            (D::Completed, &[S::Completed, S::Skipped], true),
            (D::Completed, &[S::Completed, S::Failed], false),
            (D::Failed, &[S::Completed, S::Failed], true),
            (D::Failed, &[S::Completed, S::Pending], false),
            (D::Failed, &[S::Failed, S::Running], false),
            (D::Interrupted, &[S::Completed, S::Interrupted], true),
            (D::Interrupted, &[S::Completed, S::Failed], false),
            (D::Interrupted, &[S::Completed], false),
            (D::InProgress, &[S::Completed, S::Running], true),
            (D::AwaitingRestart, &[S::Completed, S::Pending], true),
            (D::NotStarted, &[S::Pending], true),
        ];
        for (status, steps, ok) in cases {
            assert_eq!(
                check(*status, steps).is_ok(),
                *ok,
                "{status:?} with {steps:?}"
            );
        }
    }
}
