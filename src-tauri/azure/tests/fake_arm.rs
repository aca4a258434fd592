//! Against a fake Azure Resource Manager of ours on 127.0.0.1: paged lists,
//! throttling, server errors, authentication and authorization failures, a missing
//! resource group, and VMs changing state between polls. Nothing reaches the internet.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use thinkube_azure::{ArmClient, ArmError, Retry};

const SUB: &str = "0b1c2d3e-0000-4000-8000-00000000abcd";
const RG: &str = "rg-thinkube";
const TOKEN: &str = "fixed-test-token";

#[derive(Debug)]
struct FixedToken;

#[async_trait::async_trait]
impl TokenCredential for FixedToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            TOKEN,
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn ok(body: serde_json::Value) -> Reply {
    Reply {
        status: 200,
        headers: vec![],
        body: body.to_string(),
    }
}

fn err(status: u16, code: &str) -> Reply {
    Reply {
        status,
        headers: vec![],
        body: serde_json::json!({"error": {"code": code, "message": format!("fake {code}")}})
            .to_string(),
    }
}

type Handler = dyn Fn(&str, &str) -> Reply + Send + Sync;

/// Serves `handler(path_and_query, authorization)` on a free port, one request per
/// connection; records every request.
struct FakeArm {
    base: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl FakeArm {
    fn start(handler: Box<Handler>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let handler: Arc<Handler> = Arc::from(handler);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let handler = handler.clone();
                let log = log.clone();
                std::thread::spawn(move || serve(stream, &*handler, &log));
            }
        });
        Self { base, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut auth = String::new();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("authorization:") {
            auth = h[h.len() - v.len()..].trim().to_string();
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    log.lock().unwrap().push(path.clone());
    let reply = if auth != format!("Bearer {TOKEN}") {
        err(401, "InvalidAuthenticationToken")
    } else {
        handler(&path, &auth)
    };
    // Status 0: the connection is dropped without an answer (a reset).
    if reply.status == 0 {
        return;
    }
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&reply.body);
    let mut stream = stream;
    let _ = stream.write_all(out.as_bytes());
}

fn vm_id(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/{name}"
    )
}

fn vm(name: &str, power: &str) -> serde_json::Value {
    serde_json::json!({
        "id": vm_id(name), "name": name,
        "properties": {"instanceView": {"statuses": [
            {"code": "ProvisioningState/succeeded"}, {"code": format!("PowerState/{power}")}
        ]}}
    })
}

fn nic(vm_name: &str, private: &str, public: Option<&str>) -> serde_json::Value {
    let mut cfg = serde_json::json!({"properties": {"privateIPAddress": private}});
    if let Some(p) = public {
        cfg["properties"]["publicIPAddress"] = serde_json::json!({
            "id": format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/publicIPAddresses/{p}")
        });
    }
    serde_json::json!({"properties": {"virtualMachine": {"id": vm_id(vm_name)}, "ipConfigurations": [cfg]}})
}

fn client(fake: &FakeArm, attempts: u32) -> ArmClient {
    ArmClient::new(
        &fake.base,
        Arc::new(FixedToken),
        Retry {
            attempts,
            delay: Duration::from_millis(10),
            backoff: 2.0,
        },
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

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
fn one_refresh_is_one_bulk_request_set_with_power_states_and_addresses() {
    let polls = Arc::new(AtomicU32::new(0));
    let fake = FakeArm::start(cluster(5, polls, |_| "running"));
    let c = client(&fake, 5);
    let snap = rt().block_on(c.resource_group(SUB, RG)).unwrap();
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
        .block_on(client(&fake, 5).resource_group(SUB, RG))
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
        .block_on(client(&fake, 5).resource_group(SUB, RG))
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
        .block_on(client(&fake, 3).resource_group(SUB, RG))
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
            .block_on(client(&fake, 5).resource_group(SUB, RG))
            .unwrap_err();
        assert!(e.to_string().contains(says), "{e}");
        assert_eq!(fake.requests().len(), 1, "a client error is not retried");
    }
}

#[test]
fn a_deployment_of_five_vms_polled_sixteen_times_costs_one_request_set_per_poll() {
    // The VMs are created while polled: starting for the first polls, then running.
    let polls = Arc::new(AtomicU32::new(0));
    let fake = FakeArm::start(cluster(5, polls, |p| {
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
        .block_on(client(&fake, 2).resource_group(SUB, RG))
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
            .block_on(client(&fake, 5).resource_group(SUB, RG))
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
        .block_on(client(&fake, 5).resource_group(SUB, RG))
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
        .block_on(client(&fake, 5).resource_group(SUB, RG))
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
        .block_on(client(&fake, 3).resource_group(SUB, RG))
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
        .block_on(client(&fake, 3).resource_group(SUB, RG))
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
        },
    )
    .with_scope(&cloud.scope);
    rt().block_on(c.resource_group(SUB, RG)).unwrap();
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
        .block_on(client(&fake, 3).resource_group(SUB, RG))
        .unwrap();
    assert_eq!(snap.vms[0].private_ips, ["10.0.0.4"]);
}
