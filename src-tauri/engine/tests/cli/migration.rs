//! Older formats: golden conversions per version (in and out), and `migrate` on disk.

use std::path::{Path, PathBuf};

use thinkube_engine::state::migrate;
use thinkube_engine::state::store::parse_state;
use uuid::Uuid;

use crate::common::*;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// Compares `actual` with the golden file. `UPDATE_GOLDEN=1` writes what differs
/// and still fails, so an update is reviewed (git diff) and then checked by a run
/// without it: a run can never accept its own output.
fn golden(name: &str, actual: &serde_json::Value) {
    let path = data(&format!("golden/{name}"));
    let text = serde_json::to_string_pretty(actual).unwrap() + "\n";
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    if text == want {
        return;
    }
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
        panic!(
            "{} written: review it with `git diff`, then run the tests again without UPDATE_GOLDEN",
            path.display()
        );
    }
    if want.is_empty() {
        panic!(
            "missing golden {}; run with UPDATE_GOLDEN=1",
            path.display()
        );
    }
    let (n, (got, expected)) = text
        .lines()
        .zip(want.lines())
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .unwrap_or((
            text.lines().count().min(want.lines().count()),
            ("(end)", "(end)"),
        ));
    panic!(
        "{name} differs from its golden file at line {}:\n  got:      {got}\n  expected: {expected}\n(UPDATE_GOLDEN=1 writes it for review)",
        n + 1
    );
}

const NOW: &str = "2026-11-22T00:00:00Z";

fn lineage() -> Uuid {
    Uuid::parse_str("00000000-0000-4000-8000-000000000001").unwrap()
}

fn upgrade(input: &str) -> serde_json::Value {
    let bytes = std::fs::read(data(input)).unwrap();
    let loaded = parse_state(&bytes, Path::new(input), at(NOW), lineage()).unwrap();
    serde_json::to_value(&loaded.state).unwrap()
}

#[test]
fn golden_v1_queue_to_v2() {
    let v1: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data("legacy/thinkube-queue.json")).unwrap())
            .unwrap();
    golden("thinkube-queue.v2.json", &migrate::v1_to_v2(v1).unwrap());
}

#[test]
fn golden_v1_queue_to_v3() {
    let v3 = upgrade("legacy/thinkube-queue.json");
    golden("thinkube-queue.v3.json", &v3);
    assert_eq!(v3["deployment"]["status"], "awaiting_restart");
    let ids: Vec<&str> = v3["deployment"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["network-dns", "microk8s", "coredns"]);
    assert!(
        v3["deployment"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "pending")
    );
    assert_eq!(
        v3["deployment"]["phases"][1]["title"],
        "Network Configuration"
    );
}

#[test]
fn golden_v2_to_v3_failed_is_never_completed() {
    let v3 = upgrade("legacy/thinkube-v2.json");
    golden("thinkube-v2.v3.json", &v3);
    assert_eq!(v3["deployment"]["status"], "failed");
    // The phases get the earlier installer's titles, not their raw ids.
    let titles: Vec<&str> = v3["deployment"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Initial Setup", "Kubernetes"]);
    let microk8s = &v3["deployment"]["steps"][5];
    assert_eq!(microk8s["status"], "failed");
    assert_eq!(
        microk8s["attempts"][0]["error"]["message"],
        "Playbook exited with code 2"
    );
    assert_eq!(microk8s["attempts"][0]["error"]["exit_code"], 2);
    assert_eq!(
        v3["deployment"]["configuration"]["answers"]["legacy_extra_vars"]["microk8s"]["microk8s_channel"],
        "1.33/stable"
    );
}

#[test]
fn the_earlier_installers_own_error_strings_load_as_failed_steps() {
    // What its deploy page records: "Playbook execution failed" when a playbook
    // fails without a message, "Cancelled by user" when stopped.
    let mut v2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data("legacy/thinkube-v2.json")).unwrap()).unwrap();
    let books = v2["allPlaybooks"].as_array_mut().unwrap();
    books[5]["error"] = "Playbook execution failed".into();
    books[6]["status"] = "failed".into();
    books[6]["error"] = "Cancelled by user".into();
    let loaded = parse_state(
        &serde_json::to_vec(&v2).unwrap(),
        Path::new("thinkube-deployment-state.json"),
        at(NOW),
        lineage(),
    )
    .unwrap();
    let v3 = serde_json::to_value(&loaded.state).unwrap();
    assert_eq!(v3["deployment"]["status"], "failed");
    let steps = v3["deployment"]["steps"].as_array().unwrap();
    for (i, message) in [(5, "Playbook execution failed"), (6, "Cancelled by user")] {
        assert_eq!(steps[i]["status"], "failed", "{}", steps[i]);
        assert_eq!(steps[i]["attempts"][0]["error"]["message"], message);
    }
}

#[test]
fn golden_v3_is_read_as_it_is() {
    // The golden file is this test's input, never written by it.
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data("golden/thinkube-v2.v3.json")).unwrap())
            .unwrap();
    let v3 = upgrade("golden/thinkube-v2.v3.json");
    assert_eq!(v3, file, "a v3 state changed on reading");
}

#[test]
fn golden_k0rdent_import() {
    let yaml = std::fs::read_to_string(data("legacy/k0rdent-deployment-state.yaml")).unwrap();
    let k = migrate::import_k0rdent(&yaml, "deployment-state.yaml", at(NOW)).unwrap();
    let out = serde_json::json!({ "deployment": k.deployment, "facts": k.facts });
    golden("k0rdent.v3.json", &out);
    let text = out.to_string();
    assert!(
        !text.contains("EXAMPLE-NOT-A-REAL-KEY"),
        "a private key was copied"
    );
    assert_eq!(k.peers_with_private_keys, ["k0s-controller", "mylaptop"]);
    assert_eq!(out["deployment"]["status"], "interrupted");
    let step = |id: &str| {
        out["deployment"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(step("create_vms")["status"], "interrupted");
    assert_eq!(step("setup_network")["status"], "completed");
    assert_eq!(
        step("install_azure_csi")["skip_reason"],
        "azure_children not enabled"
    );
    assert_eq!(out["deployment"]["configuration"]["flags"]["kof"], true);
    let vm = &out["facts"]["infrastructure"][2];
    assert_eq!(
        (vm["key"].as_str(), vm["fetched_at"].as_str()),
        (Some("vm/k0s-worker-1"), Some("2025-07-20T08:50:12Z"))
    );
    // k0rdent recorded ARM's provisioning state: kept as that, with no power state,
    // so a vm_running gate does not take it for a running VM.
    let worker = thinkube_engine::state::fact_keys::vm(&k.facts.infrastructure, "k0s-worker-1")
        .expect("the worker's VM fact reads as a VM fact");
    assert_eq!(worker.provisioning_state.as_deref(), Some("creating"));
    assert_eq!(worker.power_state, None);
    assert!(!worker.is_running());
    assert_eq!(worker.private_ips, ["10.240.1.13"]);
}

#[test]
fn migrate_writes_the_new_format_and_keeps_the_original() {
    let home = Home::new();
    let original = std::fs::read(data("legacy/thinkube-v2.json")).unwrap();
    home.write_state(&original);
    // A reader converts in memory only.
    let v = home.status_json();
    assert_eq!(v["deployment"]["status"], "failed");
    assert!(v["converted_from"].as_str().unwrap().contains("v2"));
    assert_eq!(std::fs::read(home.state_file()).unwrap(), original);
    // --dry-run writes nothing at all.
    let listing = || {
        let mut v: Vec<_> = std::fs::read_dir(home.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let before = listing();
    let r = home.run(&["migrate", "--dry-run"]);
    assert!(
        r.stdout.contains("would convert") && r.stdout.contains("nothing was written"),
        "{}",
        r.stdout
    );
    assert_eq!(listing(), before);
    assert_eq!(std::fs::read(home.state_file()).unwrap(), original);
    let r = home.run(&["migrate"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let kept = home.path().join("deployment-state.json.schema-2.bak");
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        original,
        "the original is backed up byte for byte"
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.state_file()).unwrap()).unwrap();
    assert_eq!(written["schema_version"], 3);
    assert_eq!(
        home.status_json()["converted_from"],
        serde_json::Value::Null
    );
    assert!(
        home.run(&["migrate"])
            .stdout
            .contains("already at schema version 3")
    );
    assert!(home.run(&["events"]).stdout.contains("state_migrated"));
}

#[test]
fn any_write_converts_and_backs_up_the_queue_format() {
    let home = Home::new();
    let original = std::fs::read(data("legacy/thinkube-queue.json")).unwrap();
    home.write_state(&original);
    assert_eq!(
        home.status_json()["deployment"]["status"],
        "awaiting_restart"
    );
    assert_eq!(home.run(&["clean-state", "--yes"]).code, 0);
    assert_eq!(
        std::fs::read(home.path().join("deployment-state.json.schema-1.bak")).unwrap(),
        original
    );
    assert_eq!(home.status_json()["deployment"]["status"], "not_started");
}

#[test]
fn migrate_from_a_k0rdent_state_imports_it_without_private_keys() {
    let home = Home::new();
    let src = data("legacy/k0rdent-deployment-state.yaml");
    let r = home.run(&["migrate", "--from", src.to_str().unwrap(), "--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("would import deployment k0rdent-q7x2m9fa"),
        "{}",
        r.stdout
    );
    assert!(!home.state_file().exists());
    let r = home.run(&["migrate", "--from", src.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(
            "WireGuard private keys of k0s-controller, mylaptop were not copied; they stay in"
        ),
        "{}",
        r.stdout
    );
    let v = home.status_json();
    assert_eq!(v["deployment"]["id"], "k0rdent-q7x2m9fa");
    assert_eq!(v["deployment"]["plan_id"], "k0rdent-azure");
    assert_eq!(v["deployment"]["status"], "interrupted");
    for file in walk(home.path()) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        assert!(
            !text.contains("EXAMPLE-NOT-A-REAL-KEY"),
            "private key in {}",
            file.display()
        );
    }
    // A second import would replace a deployment: refused.
    home.run(&["migrate", "--from", src.to_str().unwrap()])
        .expect(2, &["there is already a deployment", "clean-state"]);
}

#[test]
fn migrate_from_bad_input_exits_2_naming_the_file() {
    let home = Home::new();
    let bad = home.outside("bad.yaml");
    std::fs::write(&bad, "deployment_id: [unclosed\n").unwrap();
    home.run(&["migrate", "--from", bad.to_str().unwrap()])
        .expect(2, &["bad.yaml cannot be imported"]);
    std::fs::write(&bad, "just: text\n").unwrap();
    home.run(&["migrate", "--from", bad.to_str().unwrap()])
        .expect(2, &["not a k0rdent-azure-setup deployment state"]);
    assert!(!home.state_file().exists());
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A state written before k0rdent-azure-setup 7122b56 (2025-11-07) has no `phases`:
/// `etc/state-management.sh` then wrote the phase reached and each script's marks
/// (this file is its template as `init_deployment_state` wrote it, with the marks of
/// a deployment stopped while k0s was being installed). It is imported too: what the
/// marks prove completed, the running phase interrupted, the rest pending.
#[test]
fn a_k0rdent_state_from_before_phases_is_imported_from_its_phase_and_marks() {
    let home = Home::new();
    let src = data("legacy/k0rdent-deployment-state-before-phases.yaml");
    let r = home.run(&["migrate", "--from", src.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("progress read from `phase: k0s_deployment`"),
        "{}",
        r.stdout
    );
    let v = home.status_json();
    assert_eq!(v["deployment"]["id"], "k0rdent-old7x2m9");
    assert_eq!(v["deployment"]["status"], "interrupted");
    let steps: Vec<(String, String)> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("prepare_deployment", "completed"),
        ("setup_network", "completed"),
        ("create_vms", "completed"),
        ("setup_vpn", "completed"),
        ("connect_vpn", "completed"),
        ("install_k0s", "interrupted"),
        ("install_k0rdent", "pending"),
        // Its flags were off.
        ("setup_azure_children", "skipped"),
        ("install_kof_regional", "skipped"),
    ];
    for (id, status) in want {
        assert!(
            steps.contains(&(id.to_string(), status.to_string())),
            "{id} is not {status}: {steps:?}"
        );
    }
    let facts = home.run(&["facts", "--json"]);
    assert!(facts.stdout.contains("10.240.1.11"), "{}", facts.stdout);
}
