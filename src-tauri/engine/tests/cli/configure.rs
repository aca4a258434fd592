//! `configure`: the wizard's answers from the command line, with the wizard's checks,
//! written as the wizard writes them (installer-config.json and the inventory); for
//! the thinkube plan, the inventory in the layout thinkube's playbooks expect, which
//! `plan check` then passes against the real thinkube checkout.

use crate::common::*;

fn thinkube_args<'a>() -> Vec<&'a str> {
    vec![
        "configure",
        "--plan",
        "thinkube",
        "--target",
        "ssh",
        "--host",
        "tk1=192.168.1.11",
        "--host",
        "tk2=192.168.1.11:2222",
        "--role",
        "tk1=control",
        "--role",
        "tk2=worker",
        "--ssh-user",
        "thinkube",
        "--ssh-auth",
        "agent",
        "--domain",
        "thinkube.test",
        "--network-cidr",
        "192.168.1.0/24",
        "--gateway",
        "192.168.1.1",
        "--overlay",
        "zerotier",
        "--zerotier-network-id",
        "8056c2e21c000001",
        "--overlay-cidr",
        "192.168.191.0/24",
        "--overlay-ip",
        "tk1=192.168.191.11",
        "--overlay-ip",
        "tk2=192.168.191.12",
        "--github-org",
        "thinkube-test",
    ]
}

#[test]
fn configure_writes_the_thinkube_inventory_that_plan_check_passes() {
    let home = Home::new();
    let r = home.run(&thinkube_args());
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("--flag workers=true"), "{}", r.stdout);
    assert!(
        r.stdout.contains("--var domain_name=thinkube.test"),
        "{}",
        r.stdout
    );
    let shown = home.run(&["configure", "--show", "--json"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let v: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    let cfg = &v["config"];
    assert_eq!(cfg["plan"], "thinkube");
    assert_eq!(cfg["hosts"][1]["port"], 2222);
    assert_eq!(cfg["hosts"][1]["role"], "worker");
    assert_eq!(cfg["thinkube"]["domain_name"], "thinkube.test");
    assert_eq!(cfg["flags"]["workers"], true);
    assert_eq!(cfg["flags"]["tailscale"], false);
    // The plan's domain variable follows the answer (the completion page's addresses).
    assert_eq!(cfg["vars"]["domain_name"], "thinkube.test");
    let inventory = std::fs::read_to_string(v["inventory"].as_str().unwrap()).unwrap();
    // The groups thinkube's playbooks aim at, with the hosts in them.
    let parsed: serde_json::Value = serde_saphyr::from_str(&inventory).unwrap();
    let groups = &parsed["all"]["children"];
    assert!(groups["k8s"]["children"]["k8s_control_plane"]["hosts"]["tk1"].is_object());
    assert!(groups["k8s"]["children"]["k8s_workers"]["hosts"]["tk2"].is_object());
    assert_eq!(groups["baremetal"]["hosts"]["tk2"]["ansible_port"], 2222);
    assert_eq!(
        groups["baremetal"]["hosts"]["tk1"]["overlay_ip"],
        "192.168.191.11"
    );
    assert!(groups["management"]["hosts"]["controller"].is_object());
    assert_eq!(
        parsed["all"]["vars"]["overlay_subnet_prefix"],
        "192.168.191."
    );
    // Tokens are read from the run's environment, never written.
    assert_eq!(
        parsed["all"]["vars"]["cloudflare_api_token"],
        "{{ lookup('env', 'CLOUDFLARE_TOKEN') }}"
    );
    // Against the real thinkube checkout at the pin, every playbook loads, matches
    // hosts and has the variables it requires with this inventory.
    let Some(bundle) = crate::thinkube::bundle("thinkube+thinkube") else {
        return;
    };
    use thinkube_engine::paths::{EnvName, Layout};
    use thinkube_engine::run::{plan_check, source};
    let layout = Layout::new(home.path(), EnvName::default_env());
    let plan = thinkube_engine::plan::builtin::PlanRef::parse(Some("thinkube"))
        .unwrap()
        .load(&layout.root.join("plans"))
        .unwrap();
    let config = thinkube_engine::config::load(&layout).unwrap().unwrap();
    // What the window's review page shows before there is a checkout: what a run
    // would say, word for word.
    let missing = source::view(&plan, &config.vars, &layout.home)
        .unwrap()
        .unwrap();
    assert_eq!(missing.head, None);
    assert!(!missing.own);
    assert!(
        missing
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("there is no checkout of it")),
        "{missing:?}"
    );
    let from = bundle.display().to_string();
    assert_eq!(home.run(&["source", "--from", &from]).code, 0);
    let ready = source::view(&plan, &config.vars, &layout.home)
        .unwrap()
        .unwrap();
    assert_eq!(ready.head.as_deref(), Some(ready.pinned.as_str()));
    assert_eq!(ready.problem, None);
    let r = home.run(&[
        "plan",
        "check",
        "--plan",
        "thinkube",
        "--flag",
        "workers=true",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // The review page's check of the configuration as it is, saved or not: the
    // inventory it would write, not the file (removed here), in a file of its own
    // that is gone once the check ends.
    std::fs::remove_file(layout.inventory_file()).unwrap();
    let report = plan_check::check_config(&layout, &config, Some(&ansible_playbook()), &|name| {
        std::env::var_os(name)
    })
    .unwrap();
    assert_eq!(report.problems, Vec::new(), "{report:?}");
    assert!(report.playbooks >= 34, "{report:?}");
    assert_eq!(report.inventory, "the inventory this configuration writes");
    let left: Vec<String> = std::fs::read_dir(layout.root.join("ansible"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("review") || n.starts_with("check"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // With a checkout of one's own, it is named as such and used as it is.
    let mut own = config.vars.clone();
    own.insert(
        "playbooks_root".into(),
        home.path().join("sources/thinkube").display().to_string(),
    );
    let v = source::view(&plan, &own, &layout.home).unwrap().unwrap();
    assert!(v.own && v.problem.is_none(), "{v:?}");
}

#[test]
fn configure_refuses_what_the_wizard_refuses_and_saves_nothing() {
    let home = Home::new();
    // A thinkube configuration with every setting wrong or missing.
    let r = home.run(&[
        "configure",
        "--plan",
        "thinkube",
        "--target",
        "ssh",
        "--host",
        "tk1=192.168.1.11",
        "--host",
        "tk2=192.168.1.11",
        "--ssh-user",
        "thinkube",
        "--ssh-auth",
        "agent",
        "--domain",
        "not a domain",
        "--network-cidr",
        "192.168.1.0",
        "--gateway",
        "gw",
        "--overlay",
        "zerotier",
    ]);
    r.expect(
        2,
        &[
            "the configuration was not saved",
            "thinkube.domain_name",
            "thinkube.network_cidr",
            "thinkube.network_gateway",
            "thinkube.zerotier_network_id",
            "hosts[0].overlay_ip",
            "mark at least one host as control plane",
            "192.168.1.11 port 22 is already the address of another host",
        ],
    );
    assert!(!home.path().join("installer-config.json").exists());
    assert!(!home.path().join("inventory.yaml").exists());
    // A role or overlay address for a host that is not there is named.
    home.run(&["configure", "--host", "a=10.0.0.1", "--role", "b=control"])
        .expect(2, &["no host `b`", "hosts: a", "nothing was saved"]);
    // A malformed host or role is refused by the command line itself.
    home.run(&["configure", "--host", "a=10.0.0.1:0"])
        .expect(2, &["not a port"]);
    home.run(&["configure", "--host", "a=10.0.0.1", "--role", "a=boss"])
        .expect(2, &["not a role: control or worker"]);
    assert!(!home.path().join("installer-config.json").exists());
    home.run(&["configure", "--show"])
        .expect(2, &["there is no configuration yet"]);
}

#[test]
fn configure_changes_only_what_it_is_given() {
    let home = Home::new();
    let r = home.run(&[
        "configure",
        "--plan",
        "demo",
        "--target",
        "ssh",
        "--host",
        "web=10.0.0.5",
        "--host",
        "db=[fd00::5]:2200",
        "--ssh-user",
        "ops",
        "--ssh-auth",
        "agent",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = home.run(&["configure", "--ssh-user", "admin"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value =
        serde_json::from_str(&home.run(&["configure", "--show", "--json"]).stdout).unwrap();
    assert_eq!(v["config"]["ssh_user"], "admin");
    assert_eq!(v["config"]["hosts"][1]["address"], "fd00::5");
    assert_eq!(v["config"]["hosts"][1]["port"], 2200);
    let inventory = std::fs::read_to_string(home.path().join("inventory.yaml")).unwrap();
    assert!(inventory.contains("ansible_user: \"admin\""), "{inventory}");
}

/// What `configure` saves is what a new `deploy` runs: its plan (a plan file kept by
/// its absolute path, so deploy may run anywhere), flags and variables; the command
/// line still overrides them, and flags the plan does not declare are refused when
/// configuring, with nothing saved.
#[test]
fn a_new_deploy_runs_the_configured_plan_flags_and_variables() {
    let home = Home::new();
    let dir = plan_dir(
        &home,
        &[(
            "plan.yaml",
            "id: configured\nflags:\n  - name: extra\n    default: false\nvars:\n  - name: word\n    default: plain\nphases:\n  - id: p\n    steps:\n      - id: say\n        command: [sh, -c, \"echo ${word} >> said\"]\n      - id: more\n        when: extra\n        command: [sh, -c, \"echo more >> said\"]\n",
        )],
    );
    // Relative to the folder configure runs in.
    let configure = |args: &[&str]| {
        let mut c = home.command(&[&["configure", "--target", "local"][..], args].concat());
        Run::from(c.current_dir(&dir).output().unwrap())
    };
    configure(&["--plan", "plan.yaml", "--flag", "nope=true"])
        .expect(2, &["no flag `nope`", "the configuration was not saved"]);
    assert!(!home.path().join("installer-config.json").exists());
    let r = configure(&[
        "--plan",
        "plan.yaml",
        "--flag",
        "extra=true",
        "--var",
        "word=configured",
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    let r = home.run(&["deploy"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = home.status_json();
    assert_eq!(v["deployment"]["plan_id"], "configured");
    assert_eq!(
        std::fs::read_to_string(dir.join("said")).unwrap(),
        "configured\nmore\n"
    );

    // The command line wins over what was configured.
    assert_eq!(home.run(&["clean-state", "--yes"]).code, 0);
    std::fs::remove_file(dir.join("said")).unwrap();
    let r = home.run(&["deploy", "--flag", "extra=false", "--var", "word=given"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("said")).unwrap(),
        "given\n"
    );
}
