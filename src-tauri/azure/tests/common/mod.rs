//! The fake Azure Resource Manager of the tests: a server of ours on 127.0.0.1 that
//! checks the bearer token and answers what each test's handler says. Nothing
//! reaches the internet.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use thinkube_azure::{ArmClient, Retry};

pub const SUB: &str = "0b1c2d3e-0000-4000-8000-00000000abcd";
pub const RG: &str = "rg-thinkube";
pub const TOKEN: &str = "fixed-test-token";

#[derive(Debug)]
pub struct FixedToken;

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

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

pub fn ok(body: serde_json::Value) -> Reply {
    Reply {
        status: 200,
        headers: vec![],
        body: body.to_string(),
    }
}

pub fn err(status: u16, code: &str) -> Reply {
    Reply {
        status,
        headers: vec![],
        body: serde_json::json!({"error": {"code": code, "message": format!("fake {code}")}})
            .to_string(),
    }
}

/// `handler(path_and_query, request_body)`; the bearer token is checked before.
pub type Handler = dyn Fn(&str, &str) -> Reply + Send + Sync;

/// Serves `handler` on a free port of 127.0.0.1, one request per connection;
/// records every request's method and path, and its body.
pub struct FakeArm {
    pub base: String,
    seen: Arc<Mutex<Vec<String>>>,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl FakeArm {
    pub fn start(handler: Box<Handler>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (log, body_log) = (seen.clone(), bodies.clone());
        let handler: Arc<Handler> = Arc::from(handler);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let handler = handler.clone();
                let (log, body_log) = (log.clone(), body_log.clone());
                std::thread::spawn(move || serve(stream, &*handler, &log, &body_log));
            }
        });
        Self { base, seen, bodies }
    }

    /// The paths (with queries) asked, in order.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// The request bodies, in order (empty for a GET).
    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

fn serve(
    stream: TcpStream,
    handler: &Handler,
    log: &Mutex<Vec<String>>,
    body_log: &Mutex<Vec<String>>,
) {
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
    let body = String::from_utf8_lossy(&body).to_string();
    log.lock().unwrap().push(path.clone());
    body_log.lock().unwrap().push(body.clone());
    let reply = if auth != format!("Bearer {TOKEN}") {
        err(401, "InvalidAuthenticationToken")
    } else {
        handler(&path, &body)
    };
    // Status 0: the connection is dropped without an answer (a reset); status 1:
    // held open without an answer until the test ends (a hang).
    if reply.status == 0 {
        return;
    }
    if reply.status == 1 {
        std::thread::sleep(Duration::from_secs(3600));
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

pub fn vm_id(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/{name}"
    )
}

pub fn vm(name: &str, power: &str) -> serde_json::Value {
    serde_json::json!({
        "id": vm_id(name), "name": name,
        "properties": {"instanceView": {"statuses": [
            {"code": "ProvisioningState/succeeded"}, {"code": format!("PowerState/{power}")}
        ]}}
    })
}

pub fn nic(vm_name: &str, private: &str, public: Option<&str>) -> serde_json::Value {
    let mut cfg = serde_json::json!({"properties": {"privateIPAddress": private}});
    if let Some(p) = public {
        cfg["properties"]["publicIPAddress"] = serde_json::json!({
            "id": format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/publicIPAddresses/{p}")
        });
    }
    serde_json::json!({"properties": {"virtualMachine": {"id": vm_id(vm_name)}, "ipConfigurations": [cfg]}})
}

pub fn client(fake: &FakeArm, attempts: u32) -> ArmClient {
    ArmClient::new(
        &fake.base,
        Arc::new(FixedToken),
        Retry {
            attempts,
            delay: Duration::from_millis(10),
            backoff: 2.0,
            total: Duration::from_secs(60),
        },
    )
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
