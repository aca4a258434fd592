//! The built-in k0rdent-azure plan against the real k0rdent-azure-setup
//! (`../shared/upstream/randybias+k0rdent-azure-setup.bundle`): every script the plan
//! runs exists in the checkout, is executable, and takes the arguments the plan gives
//! it, as its own usage says. Without the bundle the test says it was skipped and why.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::Home;

#[test]
fn every_script_of_the_k0rdent_plan_exists_is_executable_and_takes_its_arguments() {
    let Some(bundle) = crate::thinkube::bundle("randybias+k0rdent-azure-setup") else {
        return;
    };
    let home = Home::new();
    let checkout = home.path().join("k0rdent-azure-setup");
    crate::thinkube::clone(&bundle, &checkout);
    let root = checkout.to_str().unwrap();
    let r = home.run(&[
        "plan",
        "show",
        "--plan",
        "k0rdent-azure",
        "--var",
        &format!("k0rdent_root={root}"),
        "--flag",
        "azure_children=true",
        "--flag",
        "kof=true",
        "--json",
    ]);
    r.expect(0, &[]);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let mut checked = Vec::new();
    for step in plan["phases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["steps"].as_array().unwrap())
    {
        let runs = step["runs"].as_str().unwrap();
        let words: Vec<String> = runs
            .strip_prefix("command ")
            .unwrap_or_else(|| panic!("{runs}: every k0rdent step runs a script"))
            .split_whitespace()
            .map(|w| w.replace("${k0rdent_root}", root))
            .collect();
        let script = Path::new(&words[0]);
        let mode = std::fs::metadata(script)
            .unwrap_or_else(|e| panic!("{}: {e}", script.display()))
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "{} is not executable", script.display());
        let args = &words[1..];
        if args.is_empty() {
            // check-prerequisites.sh takes no arguments (its header: "Usage:
            // ./bin/check-prerequisites.sh") and is not asked for help: it would check.
            let text = std::fs::read_to_string(script).unwrap();
            assert!(
                text.contains("# Usage: ./bin/check-prerequisites.sh\n"),
                "{}",
                script.display()
            );
            checked.push(step["id"].as_str().unwrap().to_string());
            continue;
        }
        // Its usage, as the script prints it from a fresh checkout: the subcommand
        // the plan gives, and `-y, --yes` (every script reads its options through
        // etc/common-functions.sh's parse_standard_args).
        let usage = Command::new("bash")
            .arg(script)
            .arg("--help")
            .current_dir(&checkout)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&usage.stdout).to_string()
            + &String::from_utf8_lossy(&usage.stderr);
        assert!(
            usage.status.success(),
            "{} --help: {text}",
            script.display()
        );
        let command_listed = text
            .lines()
            .any(|l| l.split_whitespace().next() == Some(args[0].as_str()));
        assert!(
            command_listed,
            "{} does not list `{}`: {text}",
            script.display(),
            args[0]
        );
        for option in &args[1..] {
            assert_eq!(option, "-y", "{runs}: the plan gives only -y as an option");
            assert!(
                text.contains("-y, --yes"),
                "{} takes no -y: {text}",
                script.display()
            );
        }
        checked.push(step["id"].as_str().unwrap().to_string());
    }
    assert_eq!(
        checked,
        [
            "check_prerequisites",
            "prepare_deployment",
            "setup_network",
            "create_vms",
            "setup_vpn",
            "connect_vpn",
            "install_k0s",
            "install_k0rdent",
            "setup_azure_children",
            "install_azure_csi",
            "install_kof_mothership",
            "install_kof_regional",
        ]
    );
}

/// A state imported from a checkout's `state/deployment-state.yaml` takes that
/// checkout as the plan's `k0rdent_root`; one from elsewhere does not guess.
#[test]
fn an_imported_state_knows_its_checkout_as_k0rdent_root() {
    let Some(bundle) = crate::thinkube::bundle("randybias+k0rdent-azure-setup") else {
        return;
    };
    let home = Home::new();
    let checkout = home.outside("k0rdent-azure-setup");
    crate::thinkube::clone(&bundle, &checkout);
    let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/legacy/k0rdent-deployment-state.yaml");
    std::fs::create_dir_all(checkout.join("state")).unwrap();
    let file = checkout.join("state/deployment-state.yaml");
    std::fs::copy(&sample, &file).unwrap();
    home.run(&["migrate", "--from", file.to_str().unwrap()])
        .expect(0, &[]);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.state_file()).unwrap()).unwrap();
    let root = std::fs::canonicalize(&checkout).unwrap();
    assert_eq!(
        state["deployment"]["configuration"]["vars"]["k0rdent_root"],
        root.to_str().unwrap()
    );
    // The same file outside a checkout: no k0rdent_root.
    let other = Home::new();
    other
        .run(&["migrate", "--from", sample.to_str().unwrap()])
        .expect(0, &[]);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(other.state_file()).unwrap()).unwrap();
    assert!(state["deployment"]["configuration"]["vars"]["k0rdent_root"].is_null());
}

/// `plan check --plan k0rdent-azure --var k0rdent_root=PATH` checks the scripts the
/// plan runs, without Ansible (the plan has no playbook): the real checkout passes;
/// a folder that is not one names each missing script, exit 2.
#[test]
fn plan_check_of_the_k0rdent_plan_checks_its_scripts_in_the_checkout() {
    let Some(bundle) = crate::thinkube::bundle("randybias+k0rdent-azure-setup") else {
        return;
    };
    let home = Home::new();
    let checkout = home.outside("k0rdent-azure-setup");
    crate::thinkube::clone(&bundle, &checkout);
    let check = |root: &Path| {
        let mut c = k0rdent(&home, &["plan", "check"], root, true);
        c.env("THINKUBE_ANSIBLE_PLAYBOOK", "/nonexistent/ansible-playbook");
        crate::common::Run::from(c.output().unwrap())
    };
    // A fresh checkout has no config/k0rdent.yaml (`configure.sh init` writes it):
    // with KOF on, that is the only problem.
    let r = check(&checkout);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "flag kof: {}/config/k0rdent.yaml: the flag `kof` is on, but this file does not exist",
            checkout.display()
        )),
        "{}",
        r.stdout
    );
    enable_kof(&checkout);
    let r = check(&checkout);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let empty = home.outside("not-a-checkout");
    std::fs::create_dir_all(&empty).unwrap();
    let r = check(&empty);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let said = format!("{}{}", r.stdout, r.stderr);
    for script in [
        "check-prerequisites.sh",
        "prepare-deployment.sh",
        "install-kof-regional.sh",
    ] {
        assert!(
            said.contains(&format!("{}/bin/{script} does not exist", empty.display())),
            "{said}"
        );
    }
}

/// `thinkube-deploy VERB... --plan k0rdent-azure --var k0rdent_root=ROOT --flag
/// kof=KOF`, with no K0RDENT_CONFIG_FILE taken from whoever runs the tests.
fn k0rdent(home: &Home, verb: &[&str], root: &Path, kof: bool) -> Command {
    let var = format!("k0rdent_root={}", root.display());
    let flag = format!("kof={kof}");
    let mut args = verb.to_vec();
    args.extend(["--plan", "k0rdent-azure", "--var", &var, "--flag", &flag]);
    let mut c = home.command(&args);
    c.env_remove("K0RDENT_CONFIG_FILE");
    c
}

/// Writes the checkout's `config/k0rdent.yaml` as `configure.sh init` would (from
/// its default configuration), with KOF enabled as its docs say to.
fn enable_kof(checkout: &Path) {
    let default = std::fs::read_to_string(checkout.join("config/k0rdent-default.yaml")).unwrap();
    let from = "kof:\n  enabled: false";
    assert!(
        default.contains(from),
        "the default configuration has no `{from}`"
    );
    std::fs::write(
        checkout.join("config/k0rdent.yaml"),
        default.replacen(from, "kof:\n  enabled: true", 1),
    )
    .unwrap();
}

/// Whether the checkout's own `check_kof_enabled` (etc/kof-functions.sh, what
/// install-kof-*.sh ask before they do anything) says KOF is enabled, with the
/// configuration loaded as those scripts load it (`source ./etc/k0rdent-config.sh`,
/// which picks the file: K0RDENT_CONFIG_FILE when set, else ./config/k0rdent.yaml).
fn scripts_say_kof_enabled(checkout: &Path, config_file: Option<&Path>) -> bool {
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg("source ./etc/k0rdent-config.sh >/dev/null; source ./etc/kof-functions.sh; check_kof_enabled")
        .current_dir(checkout)
        .stdin(Stdio::null())
        .env_remove("K0RDENT_CONFIG_FILE");
    if let Some(f) = config_file {
        c.env("K0RDENT_CONFIG_FILE", f);
    }
    c.status().unwrap().success()
}

/// The `kof` flag maps to the configuration the KOF scripts read: for each way the
/// checkout's configuration can say it (missing, the default `false`, `true`, a
/// quoted "true", `yes`, `True`, no `kof:` at all, a file named by
/// K0RDENT_CONFIG_FILE), `plan check --flag kof=true` passes exactly when the
/// checkout's own check_kof_enabled says enabled; with the flag off it always passes.
#[test]
fn the_kof_flag_agrees_with_what_the_kof_scripts_read() {
    let Some(bundle) = crate::thinkube::bundle("randybias+k0rdent-azure-setup") else {
        return;
    };
    if Command::new("yq").arg("--version").output().is_err() {
        panic!("yq is needed to run the checkout's check_kof_enabled: run scripts/ensure-system");
    }
    let home = Home::new();
    let checkout = home.outside("k0rdent-azure-setup");
    crate::thinkube::clone(&bundle, &checkout);
    let elsewhere = home.outside("team-k0rdent.yaml");
    let check = |kof: bool, config_file: Option<&Path>| {
        let mut c = k0rdent(&home, &["plan", "check"], &checkout, kof);
        if let Some(f) = config_file {
            c.env("K0RDENT_CONFIG_FILE", f);
        }
        crate::common::Run::from(c.output().unwrap())
    };
    let config = checkout.join("config/k0rdent.yaml");
    // Each case is the checkout's default configuration (what `configure.sh init`
    // writes, and what the scripts need to load at all) with its `kof:` section's
    // first lines written another way.
    let default = std::fs::read_to_string(checkout.join("config/k0rdent-default.yaml")).unwrap();
    let from = "kof:\n  enabled: false";
    assert!(
        default.contains(from),
        "the default configuration has no `{from}`"
    );
    let cases: [(&str, Option<&str>); 8] = [
        ("missing", None),
        ("default", Some(from)),
        ("true", Some("kof:\n  enabled: true")),
        ("quoted", Some("kof:\n  enabled: \"true\"")),
        ("yes", Some("kof:\n  enabled: yes")),
        ("True", Some("kof:\n  enabled: True")),
        ("no kof", Some("not_kof:\n  enabled: true")),
        ("elsewhere", Some(from)),
    ];
    let mut verdicts = Vec::new();
    for (name, text) in cases {
        let _ = std::fs::remove_file(&config);
        let named = (name == "elsewhere").then_some(elsewhere.as_path());
        if let Some(text) = text {
            std::fs::write(&config, default.replacen(from, text, 1)).unwrap();
        }
        if named.is_some() {
            // The file K0RDENT_CONFIG_FILE names wins over the checkout's own.
            std::fs::write(
                &elsewhere,
                default.replacen(from, "kof:\n  enabled: true", 1),
            )
            .unwrap();
        }
        let enabled = scripts_say_kof_enabled(&checkout, named);
        let r = check(true, named);
        assert_eq!(
            r.code,
            if enabled { 0 } else { 2 },
            "{name}: the scripts say enabled={enabled}\n{}\n{}",
            r.stdout,
            r.stderr
        );
        if !enabled {
            assert!(r.stdout.contains("flag kof: "), "{name}: {}", r.stdout);
            assert!(r.stdout.contains("kof.enabled"), "{name}: {}", r.stdout);
        }
        let r = check(false, named);
        assert_eq!(r.code, 0, "{name}, flag off: {}\n{}", r.stdout, r.stderr);
        verdicts.push((name, enabled));
    }
    // What the real scripts said, so the cases cover both answers.
    assert_eq!(
        verdicts,
        [
            ("missing", false),
            ("default", false),
            ("true", true),
            ("quoted", false),
            ("yes", false),
            ("True", true),
            ("no kof", false),
            ("elsewhere", true),
        ]
    );
}

/// A deployment with KOF on and a checkout whose configuration does not enable it
/// stops before anything runs (the KOF scripts would refuse after an hour of Azure
/// work), saying what to set; nothing is recorded as run.
#[test]
fn a_deployment_with_kof_on_stops_before_anything_runs_when_the_configuration_disables_it() {
    let Some(bundle) = crate::thinkube::bundle("randybias+k0rdent-azure-setup") else {
        return;
    };
    let home = Home::new();
    let checkout = home.outside("k0rdent-azure-setup");
    crate::thinkube::clone(&bundle, &checkout);
    let r = crate::common::Run::from(
        k0rdent(&home, &["deploy"], &checkout, true)
            .output()
            .unwrap(),
    );
    r.expect(
        2,
        &[
            "flag kof: ",
            "config/k0rdent.yaml: the flag `kof` is on, but this file does not exist",
            "kof.enabled: true",
        ],
    );
    let status = home.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let ran: Vec<&serde_json::Value> = status["steps"]
        .as_array()
        .map(|s| s.iter().filter(|s| s["status"] != "pending").collect())
        .unwrap_or_default();
    assert!(ran.is_empty(), "{status}");
    assert!(
        !checkout.join("state").exists(),
        "a script ran: its state folder exists"
    );
}
