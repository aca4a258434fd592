//! The runner beside the physical limit:
//! - per-step overhead: a deployment of N steps that each run the same trivial
//!   playbook, against N bare `ansible-playbook` runs of it (target: within 5%);
//! - log throughput: a child printing 100,000 lines through the runner to a consumer
//!   (target: over 50,000 lines/s, none dropped).
//!
//! Needs ansible-playbook: THINKUBE_ANSIBLE_PLAYBOOK, or run scripts/ensure-ansible.
//! Run: `cargo bench -p thinkube-engine --bench runner`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

const STEPS: usize = 6;
const ROUNDS: usize = 3;
const LINES: usize = 100_000;

const PLAYBOOK: &str = "- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"
  tasks:
    - name: One trivial task
      ansible.builtin.debug:
        msg: hello
";

fn ansible() -> PathBuf {
    std::env::var_os("THINKUBE_ANSIBLE_PLAYBOOK")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/ansible-home/venv/bin/ansible-playbook")
        })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn overhead() {
    let dir = tempfile::tempdir().unwrap();
    let plan_dir = dir.path().join("plan");
    std::fs::create_dir_all(&plan_dir).unwrap();
    std::fs::write(plan_dir.join("trivial.yaml"), PLAYBOOK).unwrap();
    let mut plan = String::from("id: bench\nphases:\n  - id: p\n    steps:\n");
    for i in 0..STEPS {
        plan.push_str(&format!(
            "      - id: s{i}\n        playbook: trivial.yaml\n"
        ));
    }
    std::fs::write(plan_dir.join("plan.yaml"), plan).unwrap();
    let ansible = ansible();
    let env = [
        ("ANSIBLE_LOCALHOST_WARNING", "false"),
        ("ANSIBLE_INVENTORY_UNPARSED_WARNING", "false"),
        ("ANSIBLE_NOCOLOR", "1"),
    ];
    let mut ours = Vec::new();
    let mut bare = Vec::new();
    for round in 0..ROUNDS {
        // Interleaved so both see the same machine.
        let t = Instant::now();
        for _ in 0..STEPS {
            let out = Command::new(&ansible)
                .args(["-i", "localhost,"])
                .arg(plan_dir.join("trivial.yaml"))
                .envs(env)
                .output()
                .unwrap();
            assert!(out.status.success());
        }
        bare.push(t.elapsed().as_secs_f64() / STEPS as f64);
        let home = dir.path().join(format!("home-{round}"));
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_thinkube-deploy"))
            .args(["deploy", "--plan"])
            .arg(plan_dir.join("plan.yaml"))
            .env("THINKUBE_INSTALLER_HOME", &home)
            .env("THINKUBE_ANSIBLE_PLAYBOOK", &ansible)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ours.push(t.elapsed().as_secs_f64() / STEPS as f64);
    }
    let (o, b) = (median(ours), median(bare));
    println!(
        "| per step: bare ansible-playbook | per step: thinkube-deploy (whole run / {STEPS}) | overhead |"
    );
    println!("|---|---|---|");
    println!(
        "| {:.0} ms | {:.0} ms | {:+.1}% |",
        b * 1e3,
        o * 1e3,
        (o / b - 1.0) * 100.0
    );
}

fn throughput() {
    let cmd = thinkube_engine::run::runner::StepCommand {
        program: "python3".into(),
        args: vec!["-c".into(), format!("import sys\nfor i in range({LINES}): sys.stdout.write('log line %d of the step output\\n' % i)").into()],
        env: BTreeMap::new(),
        cwd: None,
        ansible: false,
        // One secret to look for, as a deployment with an SSH password has.
        redact: thinkube_engine::secrets::Redactor::new(["correct-horse-battery".to_string()]),
    };
    let stop = AtomicBool::new(false);
    let mut samples = Vec::new();
    for _ in 0..ROUNDS {
        let mut log = Vec::with_capacity(LINES * 40);
        let mut seen = 0usize;
        let t = Instant::now();
        let finished = thinkube_engine::run::runner::run(
            &cmd,
            &mut log,
            &mut |_| seen += 1,
            &stop,
            &mut |_| Ok(()),
        )
        .unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert!(finished.error.is_none());
        assert_eq!(seen, LINES, "lines were dropped");
        assert_eq!(
            log.iter().filter(|b| **b == b'\n').count(),
            LINES,
            "log lines were dropped"
        );
        samples.push(LINES as f64 / secs);
    }
    println!();
    println!("| lines | lines/s through the runner (median of {ROUNDS}) | dropped |");
    println!("|---|---|---|");
    println!("| {LINES} | {:.0} | 0 |", median(samples));
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    overhead();
    throughput();
}
