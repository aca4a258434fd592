//! The completion page's summary, from a real deployment of a plan with links.

use std::sync::atomic::AtomicBool;
use thinkube_engine::paths::{EnvName, Layout};
use thinkube_engine::report::completion::{LinkView, completion};
use thinkube_engine::run::deploy::{self, DeployArgs};
use thinkube_engine::state::lock::Identity;
use thinkube_engine::state::model::RunKind;
use thinkube_engine::state::store::Store;
use thinkube_engine::timestamp::Timestamp;

const PLAN: &str = "id: linked\ntitle: Linked plan\nflags:\n  - name: extra\n    default: false\nvars:\n  - name: port\n    default: \"8080\"\nlinks:\n  - title: The site\n    url: \"http://127.0.0.1:${port}/\"\n  - title: The extra page\n    url: \"http://127.0.0.1:${port}/extra\"\n    when: extra\ncredentials: \"Sign in at port ${port} as admin; the password is in ~/.env\"\nphases:\n  - id: p\n    title: P\n    steps:\n      - id: one\n        title: One\n        command: [\"true\"]\n      - id: two\n        title: Two\n        command: [\"true\"]\n        when: extra\n";

fn world(name: &str) -> (std::path::PathBuf, Store) {
    let dir = std::env::temp_dir().join(format!("tk-completion-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plan.yaml"), PLAN).unwrap();
    let store = Store::new(
        Layout::new(dir.join("home"), EnvName::default_env()),
        Identity::new("test"),
    );
    (dir, store)
}

fn deploy(dir: &std::path::Path, store: &Store, vars: &[(&str, &str)]) {
    let args = DeployArgs {
        plan: Some(dir.join("plan.yaml").display().to_string()),
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..DeployArgs::from_env(RunKind::Deploy, "test")
    };
    deploy::execute(store, &args, &AtomicBool::new(false), &mut |_| {}).unwrap();
}

#[test]
fn a_completed_deployment_says_what_where_and_how_long_with_the_plans_links() {
    let (dir, store) = world("done");
    deploy(&dir, &store, &[("port", "9999")]);
    let c = completion(&store, Timestamp::now())
        .unwrap()
        .expect("completed");
    assert_eq!(c.plan_title, "Linked plan");
    assert_eq!(c.target, "this machine");
    assert!(c.hosts.is_empty());
    // The link behind the flag that is off is left out; the variable is filled in.
    assert_eq!(
        c.links,
        vec![LinkView {
            title: "The site".into(),
            url: "http://127.0.0.1:9999/".into()
        }]
    );
    assert_eq!((c.completed_steps, c.skipped_steps, c.runs), (1, 1, 1));
    assert!(c.started_at.is_some() && c.finished_at >= c.started_at);
    assert!(c.run_seconds >= 0);
    assert!(c.plan_problem.is_none());
    // Where the credentials are, in the plan's words with its variables filled in.
    assert_eq!(
        c.credentials.as_deref(),
        Some("Sign in at port 9999 as admin; the password is in ~/.env")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nothing_to_show_before_a_deployment_completed() {
    let (dir, store) = world("none");
    assert_eq!(completion(&store, Timestamp::now()).unwrap(), None);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_plan_gone_since_still_completes_by_its_id_and_says_why_there_are_no_links() {
    let (dir, store) = world("gone");
    deploy(&dir, &store, &[]);
    std::fs::remove_file(dir.join("plan.yaml")).unwrap();
    let c = completion(&store, Timestamp::now())
        .unwrap()
        .expect("completed");
    assert_eq!(c.plan_title, "linked");
    assert!(c.links.is_empty());
    assert!(
        c.plan_problem
            .as_deref()
            .is_some_and(|p| p.contains("plan.yaml")),
        "{:?}",
        c.plan_problem
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_servers_of_the_saved_configuration_are_named_with_their_addresses() {
    use thinkube_engine::config::{Host, InstallerConfig, TargetKind};
    let (dir, store) = world("servers");
    deploy(&dir, &store, &[]);
    let config = InstallerConfig {
        target: TargetKind::Ssh,
        hosts: vec![
            Host {
                name: "tk1".into(),
                address: "10.0.0.11".into(),
                ..Default::default()
            },
            Host {
                name: "tk2".into(),
                address: "10.0.0.12".into(),
                ..Default::default()
            },
        ],
        ssh_user: "thinkube".into(),
        ssh_auth: thinkube_engine::config::SshAuth::Agent,
        plan: "demo".into(),
        ..Default::default()
    };
    thinkube_engine::config::save(&store, &config, Timestamp::now()).unwrap();
    let c = completion(&store, Timestamp::now())
        .unwrap()
        .expect("completed");
    assert_eq!(c.target, "2 servers");
    let names: Vec<(&str, &str)> = c
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), h.address.as_str()))
        .collect();
    assert_eq!(names, [("tk1", "10.0.0.11"), ("tk2", "10.0.0.12")]);
    let _ = std::fs::remove_dir_all(&dir);
}
