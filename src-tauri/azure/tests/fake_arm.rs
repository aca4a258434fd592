//! Against a fake Azure Resource Manager of ours on 127.0.0.1 (tests/common): paged
//! lists, throttling, server errors, authentication and authorization failures, a
//! missing resource group, VMs changing state between polls, Resource Graph and the
//! fall back from it to the lists. Nothing reaches the internet.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use common::*;
use thinkube_azure::{ArmClient, ArmError, Retry, Source};

/// A resource group whose VM list is `reply()` and whose other lists are empty.
fn vms_only(reply: impl Fn() -> Reply + Send + Sync + 'static) -> Box<Handler> {
    Box::new(move |path, _| {
        if path.contains("virtualMachines") {
            reply()
        } else {
            ok(serde_json::json!({"value": []}))
        }
    })
}

/// A resource group of `n` VMs whose power state is `power(poll)`.
fn cluster(n: usize, polls: Arc<AtomicU32>, power: fn(u32) -> &'static str) -> Box<Handler> {
    Box::new(move |path, _| {
        let names: Vec<String> = (1..=n).map(|i| format!("vm-{i}")).collect();
        if path.contains("networkInterfaces") {
            let nics: Vec<_> = names
                .iter()
                .enumerate()
                .map(|(i, v)| nic(v, &format!("10.0.0.{}", i + 4), (i == 0).then_some("pip-1")))
                .collect();
            ok(serde_json::json!({"value": nics}))
        } else if path.contains("publicIPAddresses") {
            ok(
                serde_json::json!({"value": [{"id": format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/publicIPAddresses/pip-1"), "properties": {"ipAddress": "20.1.2.3"}}]}),
            )
        } else if path.contains("virtualMachines") {
            let poll = polls.fetch_add(1, Ordering::SeqCst);
            let state = power(poll);
            let mut vms: Vec<_> = names.iter().map(|v| vm(v, state)).collect();
            // A VM of another resource group is left out.
            let mut other = vm("elsewhere", "running");
            other["id"] = format!("/subscriptions/{SUB}/resourceGroups/other/providers/Microsoft.Compute/virtualMachines/elsewhere").into();
            vms.push(other);
            ok(serde_json::json!({"value": vms}))
        } else {
            err(404, "NotFound")
        }
    })
}

#[test]
fn the_lists_are_one_request_set_with_power_states_and_addresses() {
    let polls = Arc::new(AtomicU32::new(0));
    let fake = FakeArm::start(cluster(5, polls, |_| "running"));
    let c = client(&fake, 5);
    let snap = rt().block_on(c.resource_group_lists(SUB, RG)).unwrap();
    assert_eq!(snap.vms.len(), 5, "{:?}", snap.vms);
    assert_eq!(snap.requests, 3, "{:?}", fake.requests());
    let first = &snap.vms[0];
    assert_eq!(first.name, "vm-1");
    assert_eq!(first.power_state, "running");
    assert_eq!(first.provisioning_state.as_deref(), Some("succeeded"));
    assert_eq!(first.private_ips, ["10.0.0.4"]);
    assert_eq!(first.public_ips, ["20.1.2.3"]);
    assert!(snap.vms[1].public_ips.is_empty());
    // Every request is scoped to the resource group: Reader on it is enough.
    let rg_scope = format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/");
    assert!(
        fake.requests().iter().all(|p| p.starts_with(&rg_scope)),
        "{:?}",
        fake.requests()
    );
    assert!(
        fake.requests().iter().any(|p| p.contains(
            "/providers/Microsoft.Compute/virtualMachines?api-version=2024-07-01&$expand=instanceView"
        )),
        "{:?}",
        fake.requests()
    );
}

#[test]
fn next_links_are_followed_and_every_page_is_counted() {
    let fake_base = Arc::new(Mutex::new(String::new()));
    let base = fake_base.clone();
    let fake = FakeArm::start(Box::new(move |path, _| {
        let b = base.lock().unwrap().clone();
        if path.contains("networkInterfaces") || path.contains("publicIPAddresses") {
            ok(serde_json::json!({"value": []}))
        } else if path.contains("page=2") {
            ok(serde_json::json!({"value": [vm("vm-2", "deallocated")]}))
        } else {
            ok(serde_json::json!({"value": [vm("vm-1", "running")],
                "nextLink": format!("{b}/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines?page=2")}))
        }
    }));
    *fake_base.lock().unwrap() = fake.base.clone();
    let snap = rt()
        .block_on(client(&fake, 5).resource_group_lists(SUB, RG))
        .unwrap();
    let states: Vec<_> = snap
        .vms
        .iter()
        .map(|v| (v.name.as_str(), v.power_state.as_str()))
        .collect();
    assert_eq!(states, [("vm-1", "running"), ("vm-2", "deallocated")]);
    assert_eq!(snap.requests, 4);
}

#[test]
fn throttling_waits_for_retry_after_and_server_errors_are_retried() {
    let calls = Arc::new(AtomicU32::new(0));
    let n = calls.clone();
    let fake = FakeArm::start(Box::new(move |path, _| {
        if !path.contains("virtualMachines") {
            return ok(serde_json::json!({"value": []}));
        }
        match n.fetch_add(1, Ordering::SeqCst) {
            0 => Reply {
                status: 429,
                headers: vec![("Retry-After", "1".into())],
                body: "{}".into(),
            },
            1 => err(503, "ServiceUnavailable"),
            _ => ok(serde_json::json!({"value": [vm("vm-1", "running")]})),
        }
    }));
    let started = std::time::Instant::now();
    let snap = rt()
        .block_on(client(&fake, 5).resource_group_lists(SUB, RG))
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    assert_eq!(snap.vms[0].power_state, "running");
    assert_eq!(snap.requests, 5, "2 lists + 3 tries of the VM list");
}

#[test]
fn a_server_that_keeps_failing_is_an_error_after_the_policy_attempts() {
    let fake = FakeArm::start(Box::new(|_, _| err(500, "InternalServerError")));
    let e = rt()
        .block_on(client(&fake, 3).resource_group_lists(SUB, RG))
        .unwrap_err();
    assert!(
        matches!(
            e,
            ArmError::Server {
                status: 500,
                attempts: 3,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(fake.requests().len(), 3);
    assert!(e.to_string().contains("InternalServerError"), "{e}");
}

#[test]
fn credential_permission_and_resource_group_failures_say_what_to_fix() {
    let cases: Vec<(Box<Handler>, &str)> = vec![
        (
            Box::new(|_, _| err(401, "InvalidAuthenticationToken")),
            "az login",
        ),
        (
            Box::new(|_, _| err(403, "AuthorizationFailed")),
            "Reader role on resource group `rg-thinkube`",
        ),
        (
            Box::new(|_, _| err(404, "ResourceGroupNotFound")),
            "resource group `rg-thinkube` does not exist",
        ),
    ];
    for (handler, says) in cases {
        let fake = FakeArm::start(handler);
        let e = rt()
            .block_on(client(&fake, 5).resource_group_lists(SUB, RG))
            .unwrap_err();
        assert!(e.to_string().contains(says), "{e}");
        assert_eq!(fake.requests().len(), 1, "a client error is not retried");
    }
}

#[test]
fn five_vms_polled_sixteen_times_through_the_lists_cost_three_requests_a_poll() {
    // The VMs are created while polled: starting for the first polls, then running.
    let polls = Arc::new(AtomicU32::new(0));
    let fake = FakeArm::start(cluster(5, polls, |p| {
        if p < 10 { "starting" } else { "running" }
    }));
    let c = client(&fake, 5);
    let rt = rt();
    let mut states = Vec::new();
    for _ in 0..16 {
        let snap = rt.block_on(c.resource_group_lists(SUB, RG)).unwrap();
        states.push(snap.vms[0].power_state.clone());
    }
    assert_eq!(states[0], "starting");
    assert_eq!(states[15], "running");
    // 16 polls x 3 requests = 48, against 125-140 for the scripted k0rdent deployment.
    assert_eq!(c.requests(), 48);
    println!("ARM requests for 5 VMs polled 16 times: {}", c.requests());
}

/// Compute's throttling answer as its troubleshooting guide shows it
/// (learn.microsoft.com, "Troubleshooting API throttling errors"): the code and
/// message at the top of the body, not under `error`.
const COMPUTE_THROTTLED: &str = r#"{
  "code": "OperationNotAllowed",
  "message": "The server rejected the request because too many requests have been received for this subscription.",
  "details": [
    {
      "code": "TooManyRequests",
      "target": "HighCostGet30Min",
      "message": "{\"operationGroup\":\"HighCostGet30Min\",\"startTime\":\"2018-06-29T19:54:21.0914017+00:00\",\"endTime\":\"2018-06-29T20:14:21.0914017+00:00\",\"allowedRequestCount\":800,\"measuredRequestCount\":1238}"
    }
  ]
}"#;

#[test]
fn computes_top_level_error_body_is_read_with_its_code_and_message() {
    let fake = FakeArm::start(vms_only(|| Reply {
        status: 429,
        headers: vec![],
        body: COMPUTE_THROTTLED.into(),
    }));
    let e = rt()
        .block_on(client(&fake, 2).resource_group_lists(SUB, RG))
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("(OperationNotAllowed)"), "{text}");
    assert!(!text.contains("unknown"), "{text}");
    assert!(
        text.contains("too many requests have been received for this subscription"),
        "{text}"
    );
    assert!(!text.contains(".."), "{text}");
}

#[test]
fn a_subscription_that_does_not_exist_is_named_as_such() {
    for (status, code) in [
        (404, "SubscriptionNotFound"),
        (400, "InvalidSubscriptionId"),
    ] {
        let fake = FakeArm::start(Box::new(move |_, _| Reply {
            status,
            headers: vec![],
            body: serde_json::json!({"error": {"code": code,
                "message": format!("The subscription '{SUB}' could not be found.")}})
            .to_string(),
        }));
        let e = rt()
            .block_on(client(&fake, 5).resource_group_lists(SUB, RG))
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("subscription {SUB} was not found ({code})")),
            "{text}"
        );
        assert!(text.contains("Check subscription_id"), "{text}");
        assert!(!text.contains(".."), "{text}");
        assert_eq!(fake.requests().len(), 1, "not retried");
    }
}

#[test]
fn an_ended_message_is_not_given_a_second_full_stop() {
    let fake = FakeArm::start(Box::new(|_, _| {
        Reply {
        status: 401,
        headers: vec![],
        body: r#"{"error":{"code":"ExpiredAuthenticationToken","message":"The access token expiry UTC time is earlier than current UTC time."}}"#.into(),
    }
    }));
    let e = rt()
        .block_on(client(&fake, 5).resource_group_lists(SUB, RG))
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("earlier than current UTC time. Log in again"),
        "{text}"
    );
    assert!(!text.contains(".."), "{text}");
}

#[test]
fn a_next_link_to_another_host_is_not_followed_with_the_token() {
    // Another listener on loopback: what the link points to, which must see nothing.
    let elsewhere = FakeArm::start(Box::new(|_, _| ok(serde_json::json!({"value": []}))));
    let target = elsewhere.base.replace("127.0.0.1", "localhost");
    let fake = FakeArm::start(vms_only(move || {
        ok(serde_json::json!({"value": [vm("vm-1", "running")],
            "nextLink": format!("{target}/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines?page=2")}))
    }));
    let e = rt()
        .block_on(client(&fake, 5).resource_group_lists(SUB, RG))
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("not followed, so the token is not sent there"),
        "{text}"
    );
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
}

#[test]
fn a_reset_connection_is_retried() {
    let calls = Arc::new(AtomicU32::new(0));
    let n = calls.clone();
    let fake = FakeArm::start(Box::new(move |path, _| {
        if path.contains("networkInterfaces") && n.fetch_add(1, Ordering::SeqCst) == 0 {
            return Reply {
                status: 0,
                headers: vec![],
                body: String::new(),
            };
        }
        if path.contains("virtualMachines") {
            ok(serde_json::json!({"value": [vm("vm-1", "running")]}))
        } else {
            ok(serde_json::json!({"value": []}))
        }
    }));
    let snap = rt()
        .block_on(client(&fake, 3).resource_group_lists(SUB, RG))
        .unwrap();
    assert_eq!(snap.vms[0].power_state, "running");
    assert_eq!(
        snap.requests, 4,
        "the reset request, its retry, and two lists"
    );
}

#[test]
fn a_vm_without_a_name_is_named_by_its_id_and_one_with_neither_is_left_out() {
    let fake = FakeArm::start(vms_only(|| {
        let mut unnamed = vm("vm-9", "running");
        unnamed["name"] = serde_json::Value::Null;
        let mut nothing = vm("x", "running");
        nothing["name"] = "".into();
        nothing["id"] = format!("/subscriptions/{SUB}/resourceGroups/{RG}/").into();
        ok(serde_json::json!({"value": [unnamed, nothing]}))
    }));
    let snap = rt()
        .block_on(client(&fake, 3).resource_group_lists(SUB, RG))
        .unwrap();
    let names: Vec<&str> = snap.vms.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["vm-9"]);
}

/// Remembers the scopes it was asked tokens for.
#[derive(Debug, Default)]
struct ScopeRecorder(Mutex<Vec<String>>);

#[async_trait::async_trait]
impl TokenCredential for ScopeRecorder {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.0
            .lock()
            .unwrap()
            .extend(scopes.iter().map(|s| s.to_string()));
        FixedToken.get_token(scopes, None).await
    }
}

#[test]
fn a_sovereign_clouds_token_is_asked_for_its_own_resource_manager() {
    let fake = FakeArm::start(Box::new(|_, _| ok(serde_json::json!({"value": []}))));
    let recorder = Arc::new(ScopeRecorder::default());
    let cloud = thinkube_azure::Settings {
        cloud: Some("china".into()),
        ..Default::default()
    }
    .cloud()
    .unwrap();
    let c = ArmClient::new(
        &fake.base,
        recorder.clone(),
        Retry {
            attempts: 1,
            delay: Duration::from_millis(10),
            backoff: 2.0,
            total: Duration::from_secs(60),
        },
    )
    .with_scope(&cloud.scope);
    rt().block_on(c.resource_group_lists(SUB, RG)).unwrap();
    assert_eq!(
        *recorder.0.lock().unwrap(),
        ["https://management.chinacloudapi.cn/.default"]
    );
}

#[test]
fn an_ip_prefix_on_a_nic_is_not_taken_for_the_vms_address() {
    let fake = FakeArm::start(Box::new(|path, _| {
        if path.contains("networkInterfaces") {
            // As the Network API writes a NIC with a /28 block beside its address
            // (`privateIPAddressPrefixLength`; the address may also come as a CIDR).
            let mut n = nic("vm-1", "10.0.0.4", None);
            n["properties"]["ipConfigurations"]
                .as_array_mut()
                .unwrap()
                .extend([
                    serde_json::json!({"name": "prefix0", "properties": {
                        "privateIPAddress": "10.0.0.16", "privateIPAddressPrefixLength": 28}}),
                    serde_json::json!({"name": "prefix1", "properties": {
                        "privateIPAddress": "10.0.0.32/28"}}),
                ]);
            ok(serde_json::json!({"value": [n]}))
        } else if path.contains("virtualMachines") {
            ok(serde_json::json!({"value": [vm("vm-1", "running")]}))
        } else {
            ok(serde_json::json!({"value": []}))
        }
    }));
    let snap = rt()
        .block_on(client(&fake, 3).resource_group_lists(SUB, RG))
        .unwrap();
    assert_eq!(snap.vms[0].private_ips, ["10.0.0.4"]);
}

/// One row of the Resource Graph query's answer: a VM with one IP configuration.
fn row(
    vm: &str,
    power: &str,
    private: &str,
    prefix: &str,
    public: &str,
    fqdn: &str,
) -> serde_json::Value {
    serde_json::json!({
        "id": vm_id(vm).to_ascii_lowercase(), "vmName": vm,
        "powerState": format!("PowerState/{power}"), "provisioningState": "Succeeded",
        "privateIp": private, "prefixLength": prefix, "publicIp": public, "fqdn": fqdn,
    })
}

/// A Resource Graph answer with `rows`, in the envelope of the API's examples.
fn graph_answer(rows: Vec<serde_json::Value>, skip_token: Option<&str>) -> Reply {
    let mut body = serde_json::json!({
        "totalRecords": rows.len(), "count": rows.len(), "resultTruncated": "false",
        "facets": [], "data": rows,
    });
    if let Some(t) = skip_token {
        body["$skipToken"] = t.into();
    }
    ok(body)
}

const GRAPH_PATH: &str = "/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01";

/// A resource group of `n` VMs, as Resource Graph answers for it: vm-1 with a public
/// address and its DNS name, and an IP prefix beside its own address.
fn graph_cluster(n: usize, polls: Arc<AtomicU32>, power: fn(u32) -> &'static str) -> Box<Handler> {
    Box::new(move |path, _| {
        if path != GRAPH_PATH {
            return err(404, "NotFound");
        }
        let state = power(polls.fetch_add(1, Ordering::SeqCst));
        let mut rows = vec![
            row(
                "vm-1",
                state,
                "10.0.0.4",
                "",
                "20.1.2.3",
                "vm-1.westeurope.cloudapp.azure.com",
            ),
            row("vm-1", state, "10.0.0.16", "28", "", ""),
        ];
        for i in 2..=n {
            rows.push(row(
                &format!("vm-{i}"),
                state,
                &format!("10.0.0.{}", i + 3),
                "",
                "",
                "",
            ));
        }
        graph_answer(rows, None)
    })
}

#[test]
fn one_refresh_is_one_resource_graph_query_with_power_states_addresses_and_names() {
    let fake = FakeArm::start(graph_cluster(5, Arc::default(), |_| "running"));
    let snap = rt()
        .block_on(client(&fake, 5).resource_group(SUB, RG))
        .unwrap();
    assert_eq!(snap.requests, 1, "{:?}", fake.requests());
    assert_eq!(snap.source, Source::ResourceGraph);
    assert_eq!(fake.requests(), [GRAPH_PATH]);
    let first = &snap.vms[0];
    assert_eq!(
        (first.name.as_str(), first.power_state.as_str()),
        ("vm-1", "running")
    );
    assert_eq!(first.provisioning_state.as_deref(), Some("succeeded"));
    assert_eq!(
        first.private_ips,
        ["10.0.0.4"],
        "the /28 prefix is not an address"
    );
    assert_eq!(first.public_ips, ["20.1.2.3"]);
    assert_eq!(first.fqdns, ["vm-1.westeurope.cloudapp.azure.com"]);
    assert_eq!(snap.vms.len(), 5);
    // The query: this subscription, this resource group's VMs, NICs and public IPs
    // joined wherever they live.
    let body: serde_json::Value = serde_json::from_str(&fake.bodies()[0]).unwrap();
    assert_eq!(body["subscriptions"], serde_json::json!([SUB]));
    let query = body["query"].as_str().unwrap();
    for part in [
        "type =~ 'microsoft.compute/virtualmachines' and resourceGroup =~ 'rg-thinkube'",
        "properties.extended.instanceView.powerState.code",
        "join kind=leftouter",
        "microsoft.network/networkinterfaces",
        "microsoft.network/publicipaddresses",
        "properties.dnsSettings.fqdn",
    ] {
        assert!(query.contains(part), "{part} not in {query}");
    }
    assert_eq!(body["options"]["resultFormat"], "objectArray");
}

#[test]
fn five_vms_polled_sixteen_times_cost_one_request_a_poll() {
    // The VMs are created while polled: starting for the first polls, then running.
    let fake = FakeArm::start(graph_cluster(5, Arc::default(), |p| {
        if p < 10 { "starting" } else { "running" }
    }));
    let c = client(&fake, 5);
    let rt = rt();
    let mut states = Vec::new();
    for _ in 0..16 {
        let snap = rt.block_on(c.resource_group(SUB, RG)).unwrap();
        states.push(snap.vms[0].power_state.clone());
    }
    assert_eq!(states[0], "starting");
    assert_eq!(states[15], "running");
    // 16 polls x 1 request, against 48 through the lists and 125-140 for the scripted
    // k0rdent deployment.
    assert_eq!(c.requests(), 16);
    println!("ARM requests for 5 VMs polled 16 times: {}", c.requests());
}

#[test]
fn resource_graph_pages_are_followed_with_their_skip_token() {
    let fake = FakeArm::start(Box::new(|_, body| {
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        match body["options"]["$skipToken"].as_str() {
            None => graph_answer(
                vec![row("vm-1", "running", "10.0.0.4", "", "", "")],
                Some("cGFnZS0y"),
            ),
            Some("cGFnZS0y") => graph_answer(
                vec![
                    row("vm-1", "running", "10.0.1.4", "", "", ""),
                    row("vm-2", "deallocated", "10.0.0.5", "", "", ""),
                ],
                None,
            ),
            Some(other) => err(400, &format!("unexpected token {other}")),
        }
    }));
    let snap = rt()
        .block_on(client(&fake, 5).resource_group(SUB, RG))
        .unwrap();
    assert_eq!(snap.requests, 2);
    let seen: Vec<_> = snap
        .vms
        .iter()
        .map(|v| {
            (
                v.name.as_str(),
                v.power_state.as_str(),
                v.private_ips.clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "vm-1",
                "running",
                vec!["10.0.0.4".to_string(), "10.0.1.4".into()]
            ),
            ("vm-2", "deallocated", vec!["10.0.0.5".to_string()]),
        ]
    );
}

/// ARM's answer when a role does not allow an action, as its message reads.
fn authorization_failed(scope: &str) -> Reply {
    Reply {
        status: 403,
        headers: vec![],
        body: serde_json::json!({"error": {"code": "AuthorizationFailed", "message": format!(
            "The client 'ci@example.com' with object id '00000000-0000-0000-0000-000000000001' does not have authorization to perform action 'Microsoft.ResourceGraph/resources/read' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials."
        )}})
        .to_string(),
    }
}

#[test]
fn a_refused_resource_graph_query_falls_back_to_the_resource_groups_lists() {
    let lists = cluster(2, Arc::default(), |_| "running");
    let fake = FakeArm::start(Box::new(move |path, body| {
        if path == GRAPH_PATH {
            authorization_failed(&format!("/subscriptions/{SUB}"))
        } else {
            lists(path, body)
        }
    }));
    let snap = rt()
        .block_on(client(&fake, 5).resource_group(SUB, RG))
        .unwrap();
    assert_eq!(snap.vms.len(), 2);
    assert_eq!(snap.vms[0].public_ips, ["20.1.2.3"]);
    assert_eq!(
        snap.requests,
        4,
        "the query and three lists: {:?}",
        fake.requests()
    );
    let Source::Lists { reason } = &snap.source else {
        panic!("{:?}", snap.source)
    };
    assert!(
        reason.contains("Resource Graph") && reason.contains("AuthorizationFailed"),
        "{reason}"
    );
}

#[test]
fn no_vm_from_resource_graph_is_explained_by_the_lists() {
    // Resource Graph answers only with what it may show: a missing group, or one the
    // identity cannot read, is an empty answer. The lists say which.
    let fake = FakeArm::start(Box::new(|path, _| {
        if path == GRAPH_PATH {
            graph_answer(vec![], None)
        } else {
            err(404, "ResourceGroupNotFound")
        }
    }));
    let e = rt()
        .block_on(client(&fake, 5).resource_group(SUB, RG))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("resource group `rg-thinkube` does not exist"),
        "{e}"
    );
    assert_eq!(fake.requests().len(), 2);
}

#[test]
fn rejected_credentials_are_not_tried_again_on_the_lists() {
    let fake = FakeArm::start(Box::new(|_, _| err(401, "ExpiredAuthenticationToken")));
    let e = rt()
        .block_on(client(&fake, 5).resource_group(SUB, RG))
        .unwrap_err();
    assert!(matches!(e, ArmError::Unauthenticated { .. }), "{e}");
    assert!(e.to_string().contains("--tenant"), "{e}");
    assert_eq!(fake.requests(), [GRAPH_PATH]);
}

#[test]
fn a_refusal_names_the_scope_that_was_refused() {
    let scope = format!("/subscriptions/{SUB}/resourceGroups/{RG}");
    let fake = FakeArm::start(Box::new(move |_, _| authorization_failed(&scope)));
    let e = rt()
        .block_on(client(&fake, 5).resource_group(SUB, RG))
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "Azure refused access to /subscriptions/{SUB}/resourceGroups/{RG} (AuthorizationFailed)"
        )),
        "{text}"
    );
    assert!(
        text.contains("Reader role on resource group `rg-thinkube`"),
        "{text}"
    );
}

fn nic_with_id(
    group: &str,
    name: &str,
    vm: &str,
    private: &str,
    public: Option<&str>,
) -> serde_json::Value {
    let mut n = nic(vm, private, None);
    n["id"] = format!(
        "/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Network/networkInterfaces/{name}"
    )
    .into();
    if let Some(p) = public {
        n["properties"]["ipConfigurations"][0]["properties"]["publicIPAddress"] = serde_json::json!({
            "id": format!("/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Network/publicIPAddresses/{p}")
        });
    }
    n
}

#[test]
fn the_lists_follow_a_vms_network_interfaces_into_other_resource_groups() {
    let fake = FakeArm::start(Box::new(|path, _| {
        let path = path.split('?').next().unwrap_or(path);
        if path.ends_with("/resourceGroups/rg-thinkube/providers/Microsoft.Compute/virtualMachines")
        {
            let mut a = vm("vm-1", "running");
            let mut b = vm("vm-2", "running");
            a["properties"]["networkProfile"] = serde_json::json!({"networkInterfaces": [
                {"id": format!("/subscriptions/{SUB}/resourceGroups/rg-net/providers/Microsoft.Network/networkInterfaces/nic-1")}]});
            b["properties"]["networkProfile"] = serde_json::json!({"networkInterfaces": [
                {"id": format!("/subscriptions/{SUB}/resourceGroups/rg-locked/providers/Microsoft.Network/networkInterfaces/nic-2")}]});
            ok(serde_json::json!({"value": [a, b]}))
        } else if path
            .ends_with("/resourceGroups/rg-net/providers/Microsoft.Network/networkInterfaces/nic-1")
        {
            ok(nic_with_id(
                "rg-net",
                "nic-1",
                "vm-1",
                "10.1.0.4",
                Some("pip-1"),
            ))
        } else if path
            .ends_with("/resourceGroups/rg-net/providers/Microsoft.Network/publicIPAddresses/pip-1")
        {
            ok(
                serde_json::json!({"id": format!("/subscriptions/{SUB}/resourceGroups/rg-net/providers/Microsoft.Network/publicIPAddresses/pip-1"),
                "properties": {"ipAddress": "20.1.2.9", "dnsSettings": {"fqdn": "vm-1.example.cloudapp.azure.com"}}}),
            )
        } else if path.contains("/resourceGroups/rg-locked/") {
            authorization_failed(&format!("/subscriptions/{SUB}/resourceGroups/rg-locked"))
        } else if path.contains("/resourceGroups/rg-thinkube/") {
            ok(serde_json::json!({"value": []}))
        } else {
            err(404, "NotFound")
        }
    }));
    let snap = rt()
        .block_on(client(&fake, 5).resource_group_lists(SUB, RG))
        .unwrap();
    let one = &snap.vms[0];
    assert_eq!(one.private_ips, ["10.1.0.4"]);
    assert_eq!(one.public_ips, ["20.1.2.9"]);
    assert_eq!(one.fqdns, ["vm-1.example.cloudapp.azure.com"]);
    // The NIC that cannot be read leaves its VM without addresses, said in a note.
    assert!(snap.vms[1].private_ips.is_empty());
    assert_eq!(snap.notes.len(), 1, "{:?}", snap.notes);
    assert!(
        snap.notes[0].contains("network interface `nic-2` in resource group `rg-locked`")
            && snap.notes[0].contains("Reader role on `rg-locked`"),
        "{:?}",
        snap.notes
    );
    assert_eq!(snap.requests, 3 + 3, "three lists, two NICs, one public IP");
}

fn bounded(fake: &FakeArm, total: Duration) -> ArmClient {
    ArmClient::new(
        &fake.base,
        Arc::new(FixedToken),
        Retry {
            attempts: 1000,
            delay: Duration::from_millis(20),
            backoff: 1.5,
            total,
        },
    )
}

#[test]
fn retries_of_a_connection_that_keeps_resetting_end_at_the_total_time_and_say_so() {
    let fake = FakeArm::start(Box::new(|_, _| Reply {
        status: 0,
        headers: vec![],
        body: String::new(),
    }));
    let e = rt()
        .block_on(bounded(&fake, Duration::from_secs(1)).resource_group_lists(SUB, RG))
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ArmError::GaveUp { .. }), "{text}");
    assert!(
        text.contains("the most one request may take (1 s)") && text.contains("network interfaces"),
        "{text}"
    );
    let tries = fake.requests().len();
    assert!((2..1000).contains(&tries), "{tries} attempts");
}

#[test]
fn an_answer_that_never_comes_is_not_waited_for_past_the_total_time() {
    let fake = FakeArm::start(Box::new(|_, _| Reply {
        status: 1,
        headers: vec![],
        body: String::new(),
    }));
    let e = rt()
        .block_on(bounded(&fake, Duration::from_secs(1)).resource_group(SUB, RG))
        .unwrap_err();
    assert!(matches!(e, ArmError::GaveUp { .. }), "{e}");
    assert!(e.to_string().contains("the Resource Graph query"), "{e}");
}
