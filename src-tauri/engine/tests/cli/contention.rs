//! Eight processes race deploy, retry, clean-state and status on one environment:
//! at most one writer at a time (each step claims a marker folder while it runs, so
//! two writers' steps overlapping would show), the others exit 3 naming the holder or
//! wait with --lock-timeout, status always answers, and the audit trail shows every
//! change exactly once.

use crate::common::*;

const ROUNDS: usize = 6;

#[test]
fn eight_processes_racing_never_make_two_writers() {
    let home = Home::new();
    let step = |id: &str| {
        format!(
            "      - id: {id}\n        command: [sh, -c, \"mkdir busy || echo {id} >> overlaps; echo {id} >> ran; sleep 0.02; rmdir busy\"]\n"
        )
    };
    let text = format!(
        "id: racing\nphases:\n  - id: p\n    steps:\n{}{}{}",
        step("one"),
        step("two"),
        step("three")
    );
    let dir = plan_dir(&home, &[("plan.yaml", &text)]);
    let plan = dir.join("plan.yaml");
    let plan = plan.to_str().unwrap();
    let roles: [&[&str]; 8] = [
        &["deploy", "--plan", plan],
        &["deploy", "--plan", plan, "--lock-timeout", "60"],
        &["retry", "one"],
        &["retry", "two", "--lock-timeout", "60"],
        &["clean-state", "--yes"],
        &["clean-state", "--yes", "--lock-timeout", "60"],
        &["status", "--json"],
        &["status"],
    ];
    let results: Vec<(Vec<&str>, Run)> = std::thread::scope(|scope| {
        let handles: Vec<_> = roles
            .iter()
            .map(|args| {
                let home = &home;
                scope.spawn(move || {
                    (0..ROUNDS)
                        .map(|_| (args.to_vec(), home.run(args)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut locked = 0;
    for (args, r) in &results {
        let waits = args.contains(&"--lock-timeout");
        match (args[0], r.code) {
            ("status", 0) => {}
            ("status", _) => panic!("status did not answer: {args:?} {r:?}"),
            (_, 3) if !waits => {
                assert!(r.stderr.contains("locked by pid"), "{args:?}: {}", r.stderr);
                locked += 1;
            }
            (_, 3) => panic!("{args:?} waited and still got exit 3: {}", r.stderr),
            ("deploy" | "clean-state", 0) => {}
            // retry of a step before the deployment started, or while it is running
            // elsewhere, is refused as bad input; that is the contract.
            ("retry", 0 | 2) => {}
            (cmd, code) => panic!(
                "{cmd}: unexpected exit {code}: {args:?}\n{}\n{}",
                r.stdout, r.stderr
            ),
        }
    }
    assert!(
        locked > 0,
        "the race never made a second writer wait: the test did not contend"
    );
    assert!(
        !dir.join("overlaps").exists(),
        "two writers ran steps at once: {:?}",
        std::fs::read_to_string(dir.join("overlaps"))
    );
    // Every change exactly once: sequence numbers 1..N, and the state agrees.
    let events: Vec<serde_json::Value> = home
        .run(&["events", "--json"])
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "event numbers have gaps or repeats"
    );
    let state = home
        .store()
        .load(thinkube_engine::timestamp::Timestamp::now())
        .unwrap()
        .unwrap()
        .state;
    assert_eq!(state.last_event_seq, seqs.len() as u64);
    assert_eq!(home.status_json()["progress"]["running"], 0);
}
