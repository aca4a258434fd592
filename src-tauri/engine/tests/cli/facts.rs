//! `facts`: cached infrastructure facts, refreshed in one pass over the configured
//! sources, shown with their age; stale when old or when their source file changed.

use std::net::TcpListener;

use crate::common::{Home, free_port};

fn configure(home: &Home, up_port: u16, down_port: u16, tfstate: &std::path::Path) {
    let config = serde_json::json!({
        "target": "ssh",
        "hosts": [
            {"name": "up", "address": "127.0.0.1", "port": up_port},
            {"name": "down", "address": "127.0.0.1", "port": down_port},
        ],
        "ssh_user": "deployer",
        "ssh_auth": "agent",
        "plan": "thinkube",
        "terraform": {"backend": "local", "state_path": tfstate.to_str().unwrap()},
    });
    write_config(home, &config);
}

/// Writes `<home>/installer-config.json` as the wizard would.
fn write_config(home: &Home, config: &serde_json::Value) {
    home.create();
    std::fs::write(
        home.path().join("installer-config.json"),
        serde_json::to_vec(config).unwrap(),
    )
    .unwrap();
}

const TFSTATE: &str = r#"{"version":4,"terraform_version":"1.9.5","serial":3,"lineage":"l-1",
  "outputs":{"controller_ip":{"value":"10.0.0.4","type":"string"},
             "kubeconfig":{"value":"apiVersion: v1","type":"string","sensitive":true}}}"#;

fn facts(home: &Home) -> Vec<serde_json::Value> {
    let r = home.run(&["facts", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v["facts"].as_array().unwrap().clone()
}

fn fact<'a>(all: &'a [serde_json::Value], key: &str) -> &'a serde_json::Value {
    all.iter()
        .find(|f| f["key"] == key)
        .unwrap_or_else(|| panic!("no fact {key} in {all:?}"))
}

#[test]
fn a_refresh_caches_terraform_outputs_and_ssh_reachability_and_a_changed_state_makes_them_stale() {
    let home = Home::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = listener.local_addr().unwrap().port();
    let tfstate = home.outside("terraform.tfstate");
    std::fs::write(&tfstate, TFSTATE).unwrap();
    configure(&home, up, free_port(), &tfstate);

    let r = home.run(&["facts"]);
    assert!(
        r.code == 0 && r.stdout.contains("No infrastructure facts are cached"),
        "{r:?}"
    );
    let r = home.run(&["facts", "--refresh"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for said in ["Terraform: 2 output(s)", "1 of 2 host(s) answer"] {
        assert!(r.stdout.contains(said), "{}", r.stdout);
    }

    let all = facts(&home);
    assert_eq!(all.len(), 7, "{all:?}");
    // Their hardware is read over SSH only: a port that is no SSH server, and one that
    // does not answer, each say why nothing was read.
    assert!(
        fact(&all, "hardware/up")["value"]["error"]
            .as_str()
            .unwrap()
            .contains("did not offer an SSH host key"),
        "{all:?}"
    );
    assert!(
        fact(&all, "hardware/down")["value"]["error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{all:?}"
    );
    assert!(all.iter().all(|f| f["stale"] == false), "{all:?}");
    assert_eq!(
        fact(&all, "terraform/output/controller_ip")["value"]["value"],
        "10.0.0.4"
    );
    assert_eq!(
        fact(&all, "terraform/output/kubeconfig")["value"]["value"],
        "(sensitive)"
    );
    let state = fact(&all, "terraform/state");
    assert_eq!(state["value"]["terraform_version"], "1.9.5");
    assert_eq!(state["value"]["backend"], "local");
    assert!(
        state["value"]["last_written_at"]
            .as_str()
            .is_some_and(|t| t.starts_with("20")),
        "{state}"
    );
    assert_eq!(state["ttl_seconds"], 3600);
    assert_eq!(fact(&all, "host/up")["value"]["reachable"], true);
    assert_eq!(fact(&all, "host/down")["value"]["reachable"], false);
    assert_eq!(fact(&all, "host/down")["source"], "inventory");
    // Nothing sensitive was written anywhere.
    for file in crate::migration::walk(home.path()) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            !text.contains("apiVersion: v1"),
            "{} holds a sensitive output",
            file.display()
        );
    }
    // The trail says what was refreshed.
    let events = home.run(&["events", "--json"]).stdout;
    assert!(
        events.contains("facts_updated") && events.contains("Terraform: 2 output(s)"),
        "{events}"
    );

    // A changed Terraform state makes its facts stale, without asking anything.
    std::fs::write(&tfstate, TFSTATE.replace("\"serial\":3", "\"serial\":4")).unwrap();
    let all = facts(&home);
    let stale = fact(&all, "terraform/output/controller_ip");
    assert_eq!(stale["stale"], true);
    assert!(
        stale["stale_reason"]
            .as_str()
            .unwrap()
            .contains("changed since it was read")
    );
    assert_eq!(fact(&all, "host/up")["stale"], false);
    let human = home.run(&["facts"]).stdout;
    assert!(
        human.contains("stale (") && human.contains("terraform/state"),
        "{human}"
    );

    // A refresh reads it again: fresh, and the old facts of each source are replaced.
    assert_eq!(home.run(&["facts", "--refresh"]).code, 0);
    let all = facts(&home);
    assert_eq!(all.len(), 7);
    assert_eq!(fact(&all, "terraform/state")["value"]["serial"], 4);
    assert!(all.iter().all(|f| f["stale"] == false));
    drop(listener);
}

#[test]
fn a_refresh_without_a_configuration_or_with_a_bad_state_says_what_to_fix() {
    let home = Home::new();
    home.run(&["facts", "--refresh"])
        .expect(2, &["there is no configuration", "wizard"]);
    let tfstate = home.outside("terraform.tfstate");
    std::fs::write(&tfstate, r#"{"version":3}"#).unwrap();
    configure(&home, free_port(), free_port(), &tfstate);
    home.run(&["facts", "--refresh"])
        .expect(2, &["format version 3, not 4", "terraform.state_path"]);
    // Nothing was written.
    assert!(!home.state_file().exists());
}

/// A plan whose second phase waits for the host (a tcp gate), deployed for real.
fn deployed_with_gate(home: &Home, port: u16) -> std::path::PathBuf {
    let plan = format!(
        "id: gated
phases:
  - id: infra
    steps:
      - id: create
        command: [\"true\"]
  - id: configure
    gates:
      - tcp: {{host: 127.0.0.1, port: {port}, timeout_seconds: 2}}
    steps:
      - id: install
        command: [\"true\"]
      - id: check
        command: [\"true\"]
"
    );
    let dir = crate::common::plan_dir(home, &[("plan.yaml", plan.as_str())]);
    let path = dir.join("plan.yaml");
    let r = home.run(&["deploy", "--plan", path.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    path
}

fn statuses(home: &Home) -> Vec<(String, String)> {
    let v = home.status_json();
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().into(),
                s["status"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[test]
fn validate_names_each_mismatch_with_the_step_it_affects_and_resets_from_the_earliest() {
    let home = Home::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tfstate = home.outside("terraform.tfstate");
    std::fs::write(&tfstate, TFSTATE).unwrap();
    configure(&home, port, port, &tfstate);
    // One host only.
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.path().join("installer-config.json")).unwrap())
            .unwrap();
    config["hosts"] = serde_json::json!([{"name": "node", "address": "127.0.0.1", "port": port}]);
    write_config(&home, &config);
    deployed_with_gate(&home, port);
    assert_eq!(home.run(&["facts", "--refresh"]).code, 0);
    let r = home.run(&["validate"]);
    assert!(r.code == 0 && r.stdout.contains("no mismatch"), "{r:?}");
    assert!(
        r.stdout.contains(&format!(
            "Checked the Terraform state {}, the SSH port of node (127.0.0.1:{port})",
            tfstate.display()
        )),
        "it says what it compared: {}",
        r.stdout
    );

    // The host goes away: it affects the phase that waits for it.
    drop(listener);
    let r = home.run(&["validate", "--json"]);
    assert_eq!(r.code, 1, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let m = &v["mismatches"][0];
    assert_eq!(m["kind"], "host_unreachable");
    assert_eq!(m["affects_step"], "install");
    assert!(
        m["what_to_do"]
            .as_str()
            .unwrap()
            .contains("--reset-affected")
    );
    assert_eq!(v["reset"], serde_json::json!([]));

    // And the Terraform state changed: it affects everything from the first step.
    std::fs::write(&tfstate, TFSTATE.replace("10.0.0.4", "10.0.0.9")).unwrap();
    let r = home.run(&["validate"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("changed since its outputs were read")
            && r.stdout.contains("affects: step `create` and later")
            && r.stdout.contains("affects: step `install` and later"),
        "{}",
        r.stdout
    );
    // Listing changes nothing.
    assert!(statuses(&home).iter().all(|(_, s)| s == "completed"));

    let r = home.run(&["validate", "--reset-affected", "--yes"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("Marked pending: create, install, check"),
        "{}",
        r.stdout
    );
    assert!(statuses(&home).iter().all(|(_, s)| s == "pending"));
    assert_eq!(home.status_json()["deployment"]["status"], "interrupted");
    let events = home.run(&["events", "--json"]).stdout;
    assert!(
        events.contains("validate: to run again: create, install, check"),
        "{events}"
    );

    // Resuming checks the host before anything runs: it does not answer, so nothing
    // runs and no step changes (exit 5).
    let before = std::fs::read(home.state_file()).unwrap();
    home.run(&["resume"]).expect(
        5,
        &[
            "the deployment was not resumed",
            "host node (127.0.0.1:",
            "VPN",
        ],
    );
    assert_eq!(std::fs::read(home.state_file()).unwrap(), before);
    // Back up (when the port is still free to take again): the resume runs.
    if let Ok(_listener) = TcpListener::bind(("127.0.0.1", port)) {
        let r = home.run(&["resume"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
}

#[test]
fn validate_resets_only_from_the_phase_that_relies_on_a_lost_host() {
    let home = Home::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    home.create();
    let config = serde_json::json!({
        "target": "ssh", "ssh_user": "deployer", "ssh_auth": "agent", "plan": "gated",
        "hosts": [{"name": "node", "address": "127.0.0.1", "port": port}],
    });
    write_config(&home, &config);
    deployed_with_gate(&home, port);
    // The gate recorded what it saw, as a runtime fact of the host.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.state_file()).unwrap()).unwrap();
    let seen = &state["facts"]["runtime"][0];
    assert_eq!(seen["host"], "127.0.0.1");
    assert_eq!(seen["kind"], format!("tcp_port_{port}_open"));
    assert_eq!(seen["last_seen_true"], seen["checked_at"]);
    drop(listener);
    let r = home.run(&["validate", "--reset-affected", "--yes"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(
        statuses(&home),
        [
            ("create".into(), "completed".into()),
            ("install".into(), "pending".into()),
            ("check".into(), "pending".into()),
        ]
    );
}

/// With Azure support (the app's build, and the workspace's tests), a refresh of an
/// Azure target asks for a token first; without a login it says how to log in, and
/// writes nothing. (The ARM protocol itself is tested against a fake server in
/// src-tauri/azure/tests/fake_arm.rs.)
#[cfg(feature = "azure")]
#[test]
fn an_azure_refresh_without_credentials_says_how_to_log_in_and_writes_nothing() {
    let home = Home::new();
    home.create();
    let config = serde_json::json!({
        "target": "azure", "ssh_user": "azureuser", "ssh_auth": "agent", "plan": "k0rdent-azure",
        "hosts": [{"name": "k0s-controller", "address": "10.0.0.4"}],
        "azure": {"subscription_id": "0b1c2d3e-0000-4000-8000-00000000abcd",
                  "resource_group": "rg-thinkube", "credential": "client_secret",
                  "endpoint": "http://127.0.0.1:9"},
    });
    write_config(&home, &config);
    let mut c = home.command(&["facts", "--refresh"]);
    for var in ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"] {
        c.env_remove(var);
    }
    let r = crate::common::Run::from(c.output().unwrap());
    r.expect(
        2,
        &[
            "could not get an Azure token",
            "AZURE_TENANT_ID is not set",
            "az login",
        ],
    );
    assert!(!home.state_file().exists());
}

/// A `vm_running` gate whose VM facts are missing asks the configured source once
/// before it judges; when that fails, the run records why and the gate blocks (exit 5)
/// with the reason, changing no step.
#[cfg(feature = "azure")]
#[test]
fn a_vm_running_gate_refreshes_missing_vm_facts_first_and_blocks_with_the_reason() {
    let home = Home::new();
    home.create();
    let config = serde_json::json!({
        "target": "azure", "ssh_user": "azureuser", "ssh_auth": "agent", "plan": "vms",
        "hosts": [{"name": "k0s-controller", "address": "10.0.0.4"}],
        "azure": {"subscription_id": "0b1c2d3e-0000-4000-8000-00000000abcd",
                  "resource_group": "rg-thinkube", "credential": "client_secret",
                  "endpoint": "http://127.0.0.1:9"},
    });
    write_config(&home, &config);
    let plan = "id: vms
phases:
  - id: create
    steps:
      - id: create-vms
        command: [\"true\"]
  - id: configure
    gates:
      - vm_running: {vms: [k0s-controller]}
    steps:
      - id: install
        command: [\"true\"]
";
    let dir = crate::common::plan_dir(&home, &[("plan.yaml", plan)]);
    let mut c = home.command(&["deploy", "--plan", dir.join("plan.yaml").to_str().unwrap()]);
    for var in ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"] {
        c.env_remove(var);
    }
    let r = crate::common::Run::from(c.output().unwrap());
    r.expect(
        5,
        &[
            "gate vm_running k0s-controller blocked",
            "no power state of VM k0s-controller is cached",
        ],
    );
    assert_eq!(
        statuses(&home),
        [
            ("create-vms".into(), "completed".into()),
            ("install".into(), "pending".into()),
        ]
    );
    let events = home.run(&["events"]).stdout;
    assert!(
        events.contains("the VM facts could not be refreshed")
            && events.contains("AZURE_TENANT_ID is not set"),
        "{events}"
    );
}

/// `validate` on an Azure target asks Azure about the VMs the state saw running; when
/// it cannot, it says so as a mismatch (exit 1) rather than reporting a match.
#[cfg(feature = "azure")]
#[test]
fn validate_says_when_azure_cannot_be_asked_about_the_vms() {
    let home = Home::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    home.create();
    deployed_with_gate(&home, port);
    // The state saw the VM running (as a refresh would have recorded it).
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.state_file()).unwrap()).unwrap();
    state["facts"]["infrastructure"] = serde_json::json!([{
        "key": "vm/k0s-controller", "source": "azure",
        "value": {"power_state": "running", "provisioning_state": "succeeded",
                  "private_ips": ["10.0.0.4"], "public_ips": []},
        "fetched_at": "2026-11-22T10:00:00Z", "ttl_seconds": 300, "checksum": null
    }]);
    home.write_state(&serde_json::to_vec(&state).unwrap());
    let config = serde_json::json!({
        "target": "azure", "ssh_user": "azureuser", "ssh_auth": "agent", "plan": "gated",
        "hosts": [{"name": "node", "address": "127.0.0.1", "port": port}],
        "azure": {"subscription_id": "0b1c2d3e-0000-4000-8000-00000000abcd",
                  "resource_group": "rg-thinkube", "credential": "client_secret",
                  "endpoint": "http://127.0.0.1:9"},
    });
    write_config(&home, &config);
    let mut c = home.command(&["validate", "--json"]);
    for var in ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"] {
        c.env_remove(var);
    }
    let r = crate::common::Run::from(c.output().unwrap());
    assert_eq!(r.code, 1, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let m = &v["mismatches"][0];
    assert_eq!(m["kind"], "source_unavailable");
    assert!(
        m["detail"]
            .as_str()
            .unwrap()
            .contains("AZURE_TENANT_ID is not set"),
        "{m}"
    );
    drop(listener);
}

#[test]
fn a_step_that_succeeds_records_what_it_proves_for_every_host() {
    let home = Home::new();
    home.create();
    let config = serde_json::json!({
        "target": "ssh", "ssh_user": "deployer", "ssh_auth": "agent", "plan": "proofs",
        "hosts": [{"name": "node1", "address": "10.0.0.11"}, {"name": "node2", "address": "10.0.0.12"}],
    });
    write_config(&home, &config);
    let plan = "id: proofs
phases:
  - id: p
    steps:
      - id: check-ssh
        command: [\"true\"]
        proves: [ssh_verified, cloud_init_complete]
";
    let dir = crate::common::plan_dir(&home, &[("plan.yaml", plan)]);
    let path = dir.join("plan.yaml");
    let r = home.run(&["deploy", "--plan", path.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.state_file()).unwrap()).unwrap();
    let mut seen: Vec<(String, String)> = state["facts"]["runtime"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !f["last_seen_true"].is_null())
        .map(|f| {
            (
                f["host"].as_str().unwrap().into(),
                f["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("node1".into(), "cloud_init_complete".into()),
            ("node1".into(), "ssh_verified".into()),
            ("node2".into(), "cloud_init_complete".into()),
            ("node2".into(), "ssh_verified".into()),
        ]
    );
    let events = home.run(&["events"]).stdout;
    assert!(
        events.contains("step check-ssh proved ssh_verified, cloud_init_complete for node1, node2"),
        "{events}"
    );
    // `facts` shows them with their age.
    let shown = home.run(&["facts"]).stdout;
    assert!(
        shown.contains("Runtime facts")
            && shown.contains("node2")
            && shown.contains("last seen true"),
        "{shown}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&home.run(&["facts", "--json"]).stdout).unwrap();
    assert_eq!(v["runtime"].as_array().unwrap().len(), 4);

    // A fact name that is not one is refused with its place, before anything runs.
    let bad = crate::common::plan_dir(
        &home,
        &[(
            "plan.yaml",
            &plan.replace("[ssh_verified, cloud_init_complete]", "[SSH verified]"),
        )],
    );
    home.run(&["clean-state", "--yes"]);
    home.run(&["deploy", "--plan", bad.join("plan.yaml").to_str().unwrap()])
        .expect(
            2,
            &["plan.yaml:", "`proves: SSH verified` is not a fact name"],
        );
}

/// "The state matches reality" was said for a local target, where nothing can be
/// compared: it says there was nothing to check instead (and `--json` lists what
/// was checked: nothing).
#[test]
fn validate_of_a_local_target_says_there_was_nothing_to_check() {
    let home = Home::new();
    crate::common::one_completed_step(&home);
    let r = home.run(&["validate"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("Nothing to check"), "{}", r.stdout);
    assert!(!r.stdout.contains("matches reality"), "{}", r.stdout);
    let r = home.run(&["validate", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["checked"], serde_json::json!([]));
    assert_eq!(v["mismatches"], serde_json::json!([]));
}

/// A managed identity's token endpoint and a Resource Manager of ours on 127.0.0.1:
/// a token for any request, and one Resource Graph answer with `rows`. Returns the
/// base address and the paths asked, in order.
#[cfg(feature = "azure")]
fn fake_azure(rows: serde_json::Value) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut length = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            log.lock().unwrap().push(path.clone());
            let expires_on = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 3600;
            // The App Service form of a managed identity (IDENTITY_ENDPOINT).
            let answer = if path.starts_with("/msi/token") {
                serde_json::json!({"token_type": "Bearer", "expires_on": expires_on.to_string(),
                    "resource": "https://management.azure.com", "access_token": "local-test-token"})
            } else if path.starts_with("/providers/Microsoft.ResourceGraph/resources") {
                serde_json::json!({"totalRecords": 1, "count": 1, "resultTruncated": "false",
                    "facets": [], "data": rows.clone()})
            } else {
                serde_json::json!({"error": {"code": "NotFound", "message": path}})
            };
            let status = if answer.get("error").is_some() {
                404
            } else {
                200
            };
            let text = answer.to_string();
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (base, seen)
}

/// thinkube-deploy, as built by default, refreshes Azure VM facts itself: the
/// managed identity's token (its App Service endpoint, IDENTITY_ENDPOINT, on
/// 127.0.0.1) and one Resource Graph request give the VM's power state, addresses
/// and DNS name, recorded in the same shape as any VM fact; the identity's header
/// secret is in no file of the home.
#[cfg(feature = "azure")]
#[test]
fn thinkube_deploy_refreshes_azure_vm_facts_with_one_resource_graph_request() {
    let home = Home::new();
    home.create();
    let sub = "0b1c2d3e-0000-4000-8000-00000000abcd";
    let (base, seen) = fake_azure(serde_json::json!([{
        "id": format!("/subscriptions/{sub}/resourcegroups/rg-thinkube/providers/microsoft.compute/virtualmachines/k0s-controller"),
        "vmName": "k0s-controller", "powerState": "PowerState/running",
        "provisioningState": "Succeeded", "privateIp": "10.0.0.4", "prefixLength": "",
        "publicIp": "20.1.2.3", "fqdn": "k0s-controller.westeurope.cloudapp.azure.com",
    }]));
    write_config(
        &home,
        &serde_json::json!({
            "target": "azure", "ssh_user": "azureuser", "ssh_auth": "agent", "plan": "k0rdent-azure",
            "hosts": [{"name": "k0s-controller", "address": "10.0.0.4"}],
            "azure": {"subscription_id": sub, "resource_group": "rg-thinkube",
                      "credential": "managed_identity", "endpoint": base},
        }),
    );
    let secret = "identity-header-that-stays-in-memory";
    let mut c = home.command(&["facts", "--refresh"]);
    c.env("IDENTITY_ENDPOINT", format!("{base}/msi/token"))
        .env("IDENTITY_HEADER", secret);
    let r = crate::common::Run::from(c.output().unwrap());
    r.expect(0, &[]);
    assert!(
        r.stdout.contains(
            "Azure: 1 VM(s) in resource group rg-thinkube (1 ARM request(s), Resource Graph)"
        ),
        "{}",
        r.stdout
    );
    let all = facts(&home);
    let vm = fact(&all, "vm/k0s-controller");
    assert_eq!(
        vm["value"],
        serde_json::json!({"power_state": "running", "provisioning_state": "succeeded",
            "private_ips": ["10.0.0.4"], "public_ips": ["20.1.2.3"],
            "fqdns": ["k0s-controller.westeurope.cloudapp.azure.com"]})
    );
    let refresh = fact(&all, "azure/refresh");
    assert_eq!(refresh["value"]["arm_requests"], 1);
    assert_eq!(refresh["value"]["via"], "resource_graph");
    let asked = seen.lock().unwrap().clone();
    assert!(asked[0].starts_with("/msi/token"), "{asked:?}");
    assert_eq!(asked.len(), 2, "one token, one query: {asked:?}");
    for file in crate::migration::walk(home.path()) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).to_string();
        assert!(
            !text.contains(secret),
            "{} holds the secret",
            file.display()
        );
    }
}

/// When Azure Resource Manager cannot be reached (here a server on 127.0.0.1 that
/// closes every connection before answering, after a token was given), a refresh
/// retries, then fails as "not reachable" (exit 1, not bad input: nothing the user
/// typed is wrong), names the endpoint, and writes nothing. Takes about 30 s: the
/// ARM policy's waits (2, 4, 8, 16 s) before its last attempt.
#[cfg(feature = "azure")]
#[test]
fn an_azure_refresh_that_cannot_reach_resource_manager_exits_1_and_writes_nothing() {
    let home = Home::new();
    home.create();
    let (token_base, _) = fake_azure(serde_json::json!([]));
    let dropping = TcpListener::bind("127.0.0.1:0").unwrap();
    let arm = format!("http://{}", dropping.local_addr().unwrap());
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = attempts.clone();
    std::thread::spawn(move || {
        for stream in dropping.incoming().flatten() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    write_config(
        &home,
        &serde_json::json!({
            "target": "azure", "ssh_user": "azureuser", "ssh_auth": "agent", "plan": "k0rdent-azure",
            "hosts": [{"name": "k0s-controller", "address": "10.0.0.4"}],
            "azure": {"subscription_id": "0b1c2d3e-0000-4000-8000-00000000abcd",
                      "resource_group": "rg-thinkube", "credential": "managed_identity",
                      "endpoint": arm},
        }),
    );
    let mut c = home.command(&["facts", "--refresh"]);
    c.env("IDENTITY_ENDPOINT", format!("{token_base}/msi/token"))
        .env("IDENTITY_HEADER", "header");
    let r = crate::common::Run::from(c.output().unwrap());
    r.expect(
        1,
        &["the Azure VM facts could not be refreshed", arm.as_str()],
    );
    assert!(
        attempts.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "a dropped connection is retried"
    );
    assert!(!home.state_file().exists(), "nothing is written");
}
