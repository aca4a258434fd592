//! Builds a history of runs and events in an installer home, in the same on-disk
//! shape the engine writes, without paying a durable write per file (the benchmarks
//! measure commits and status, not how fast we can make test data).

use std::io::Write;
use std::path::Path;

use thinkube_engine::paths::{EnvName, Layout};
use thinkube_engine::state::lifecycle::{Deployment, PlannedDeployment, PlannedStep};
use thinkube_engine::state::lock::{Identity, LockWait};
use thinkube_engine::state::model::{
    AttemptOutcome, Configuration, Event, EventKind, PhaseRecord, RunKind, RunOutcome, RunRecord,
    RunStep,
};
use thinkube_engine::state::store::Store;
use thinkube_engine::timestamp::Timestamp;

pub fn store(home: &Path) -> Store {
    Store::new(
        Layout::new(home, EnvName::default_env()),
        Identity::new("bench"),
    )
}

/// A deployment of `steps` steps in progress, committed through the engine.
pub fn start_deployment(home: &Path, steps: usize) {
    let s = store(home);
    let now = Timestamp::now();
    let mut w = s.open_writer("bench", LockWait::NoWait, now).unwrap();
    let plan = PlannedDeployment {
        id: "d-bench".into(),
        plan_id: "bench".into(),
        plan_source: None,
        plan_digest: "sha256:bench".into(),
        configuration: Configuration::default(),
        phases: vec![PhaseRecord {
            id: "p".into(),
            title: "Phase".into(),
        }],
        steps: (0..steps)
            .map(|i| PlannedStep {
                id: format!("step-{i:05}"),
                phase: "p".into(),
                title: format!("Step number {i}"),
                source: Some(format!("playbook ansible/{i:05}.yaml")),
                definition_digest: Some("sha256:0123456789abcdef".into()),
                skip_reason: None,
            })
            .collect(),
    };
    let d = Deployment::empty(Configuration::default())
        .start(plan, now)
        .unwrap();
    let rec = d.erase().into_record();
    w.commit(now, vec![], |st| {
        st.deployment = rec;
        Ok(())
    })
    .unwrap();
    w.finish().unwrap();
}

/// Writes `runs` finished run files and `events` events.
pub fn add_history(home: &Path, runs: usize, events: usize) {
    let layout = Layout::new(home, EnvName::default_env());
    std::fs::create_dir_all(layout.runs_dir()).unwrap();
    let t0 = Timestamp::parse("2025-01-01T00:00:00Z").unwrap();
    for i in 0..runs {
        let started = t0.plus_seconds(i as i64 * 600);
        let run = RunRecord {
            run_id: format!("{}-{i:06x}", started.compact()),
            kind: RunKind::Deploy,
            deployment_id: Some("d-bench".into()),
            started_at: started,
            finished_at: Some(started.plus_seconds(300)),
            outcome: if i % 3 == 0 {
                RunOutcome::Failed
            } else {
                RunOutcome::Success
            },
            plan_id: Some("bench".into()),
            plan_digest: Some("sha256:bench".into()),
            configuration: Configuration::default(),
            enabled_flags: vec!["gpu".into()],
            steps_attempted: (0..8)
                .map(|s| RunStep {
                    step: format!("step-{s:05}"),
                    attempt: 1,
                    outcome: AttemptOutcome::Success,
                    started_at: Some(started),
                    finished_at: Some(started.plus_seconds(30)),
                    error: None,
                })
                .collect(),
            program: "bench".into(),
        };
        std::fs::write(
            layout.run_file(&run.run_id),
            serde_json::to_vec_pretty(&run).unwrap(),
        )
        .unwrap();
    }
    let mut f = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(layout.events_file())
            .unwrap(),
    );
    let s = store(home);
    let last = s
        .load(Timestamp::now())
        .unwrap()
        .map_or(0, |l| l.state.last_event_seq);
    for i in 0..events {
        let e = Event {
            seq: last + 1 + i as u64,
            at: t0.plus_seconds(i as i64),
            run_id: Some("20250101T000000Z-000000".into()),
            kind: EventKind::StepCompleted,
            step: Some(format!("step-{:05}", i % 1000)),
            message: "step completed".into(),
        };
        serde_json::to_writer(&mut f, &e).unwrap();
        f.write_all(b"\n").unwrap();
    }
    f.flush().unwrap();
    // Let the state know the trail's length, as the engine would have.
    let mut w = s
        .open_writer("bench", LockWait::NoWait, Timestamp::now())
        .unwrap();
    w.commit(Timestamp::now(), vec![], |_| Ok(())).unwrap();
    w.finish().unwrap();
}

/// Median and 99th percentile of durations, in microseconds.
pub fn summary(mut micros: Vec<f64>) -> (f64, f64) {
    micros.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| micros[((micros.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}
