//! A small Azure Resource Manager client for the installer's infrastructure facts.
//!
//! One refresh of a resource group is one request: an Azure Resource Graph query
//! (`Microsoft.ResourceGraph/resources`) over the subscription, limited to the
//! resource group's VMs and joined with their network interfaces and public IP
//! addresses wherever those live (power state, provisioning state, private and
//! public IPs, FQDNs). Resource Graph answers with what the identity may read, so
//! Reader on the resource group is enough. When Resource Graph refuses or cannot
//! answer (or finds no VM, which the lists then confirm or explain), the refresh
//! falls back to the resource group's own lists: its VMs with their instance views
//! (`$expand=instanceView`), its network interfaces and its public IP addresses,
//! plus one request for each NIC or public IP of another resource group.
//!
//! `nextLink` pages are followed on the endpoint's own host only (the bearer token
//! goes nowhere else); 429 waits for `Retry-After`; 5xx, reset connections and
//! timeouts are retried with the caller's policy, within a total time per request
//! that is said when reached; authentication, authorization, a missing subscription
//! and a missing resource group are errors that name what to fix, read from ARM's
//! `error` body or Compute's top-level one. Every request is counted.
//!
//! Why not `azure_mgmt_compute`: docs/decisions/0010-azure-arm-client.md.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use azure_core::credentials::TokenCredential;
use serde::{Deserialize, Serialize};

/// The token scope of Azure Resource Manager.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
/// The public cloud's Resource Manager.
pub const PUBLIC_ENDPOINT: &str = "https://management.azure.com";
const COMPUTE_API: &str = "2024-07-01";
const NETWORK_API: &str = "2024-05-01";
const RESOURCE_GRAPH_API: &str = "2024-04-01";
/// Longest `Retry-After` honoured; a longer one is an error to try later.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// Longest wait for one answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How 5xx answers, throttling and transport failures are retried (the engine passes
/// its shared policy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    /// Total attempts per request, the first included.
    pub attempts: u32,
    pub delay: Duration,
    pub backoff: f64,
    /// The longest one request may take, its attempts and waits included: no attempt
    /// starts, and no wait begins, that would end after it.
    pub total: Duration,
}

impl Retry {
    fn delay_before(&self, next: u32) -> Duration {
        let factor = self
            .backoff
            .powi(i32::try_from(next.saturating_sub(2)).unwrap_or(i32::MAX));
        self.delay.mul_f64(factor.min(1e6))
    }
}

/// One VM as the refresh saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmState {
    pub name: String,
    /// `running`, `deallocated`, `stopped`, `starting`, `deallocating`, ... or
    /// `unknown` when Azure did not say.
    pub power_state: String,
    /// Lower case (`succeeded`, `creating`, `failed`, ...), from either source.
    pub provisioning_state: Option<String>,
    pub private_ips: Vec<String>,
    pub public_ips: Vec<String>,
    /// The public IPs' DNS names (`dnsSettings.fqdn`).
    pub fqdns: Vec<String>,
}

/// How a refresh learned what it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// One Resource Graph query (pages aside).
    ResourceGraph,
    /// The resource group's lists, because Resource Graph could not be used: why.
    Lists { reason: String },
}

/// What one refresh of a resource group learned, and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub vms: Vec<VmState>,
    /// ARM requests made by this refresh (pages and retries included).
    pub requests: u32,
    pub source: Source,
    /// What could not be read and is therefore missing (a NIC in a resource group
    /// the identity cannot read), each with what to do.
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    #[error(
        "Azure rejected the credentials ({code}): {message}. Log in again with `az login` (with --tenant when the subscription is in another tenant), or check AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET, and tenant_id in the configuration"
    )]
    Unauthenticated { code: String, message: String },
    #[error(
        "Azure refused access to {scope} ({code}): {message}. Give the identity the Reader role on resource group `{resource_group}`"
    )]
    Forbidden {
        code: String,
        message: String,
        /// What was refused, as ARM names it (the error's scope) or the request's path.
        scope: String,
        resource_group: String,
    },
    #[error(
        "resource group `{resource_group}` does not exist in subscription {subscription}; check the subscription and resource group in the configuration"
    )]
    ResourceGroupNotFound {
        subscription: String,
        resource_group: String,
    },
    #[error(
        "subscription {subscription} was not found ({code}): {message}. Check subscription_id in the configuration, and that the identity can see that subscription (`az account list` shows those of a CLI login)"
    )]
    SubscriptionNotFound {
        subscription: String,
        code: String,
        message: String,
    },
    #[error(
        "Azure is throttling requests and asks to wait {seconds} s; refresh again in {seconds} s"
    )]
    Throttled { seconds: u64 },
    #[error("Azure answered {status} ({code}) to {what} after {attempts} attempts: {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
        what: String,
        attempts: u32,
    },
    #[error(
        "gave up on {what} after {attempts} attempts in {elapsed_s} s, the most one request may take ({total_s} s); the last: {last}. Check the network to Azure and refresh again"
    )]
    GaveUp {
        what: String,
        attempts: u32,
        elapsed_s: u64,
        total_s: u64,
        last: String,
    },
    #[error("could not reach Azure Resource Manager at {endpoint}: {source}")]
    Transport {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "could not get an Azure token: {0}. Log in with `az login`, or configure a service principal or managed identity"
    )]
    Token(String),
    #[error("{0}: fix `azure` in installer-config.json (or on the wizard's SSH page)")]
    Configuration(String),
    #[error("Azure's answer to {what} could not be read: {reason}")]
    Unexpected { what: String, reason: String },
}

impl ArmError {
    /// Whether the lists may succeed where Resource Graph did not: not when the
    /// credentials, the configuration or the network are what failed.
    fn lists_may_answer(&self) -> bool {
        !matches!(
            self,
            ArmError::Unauthenticated { .. }
                | ArmError::Token(_)
                | ArmError::Configuration(_)
                | ArmError::Transport { .. }
                | ArmError::GaveUp { .. }
        )
    }
}

/// Azure Resource Manager, for one subscription.
pub struct ArmClient {
    http: reqwest::Client,
    endpoint: String,
    /// The token scope: the cloud's Resource Manager (`<arm>/.default`).
    scope: String,
    credential: Arc<dyn TokenCredential>,
    retry: Retry,
    requests: AtomicU32,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<serde_json::Value>,
    #[serde(rename = "nextLink")]
    next_link: Option<String>,
}

/// A Resource Graph answer (`QueryResponse`): rows as objects, and a skip token when
/// more pages follow.
#[derive(Deserialize)]
struct GraphPage {
    #[serde(default)]
    data: Vec<GraphRow>,
    #[serde(rename = "$skipToken")]
    skip_token: Option<String>,
    /// `"true"` or `"false"` in the API's examples (an enum); a boolean is read too.
    #[serde(rename = "resultTruncated", default)]
    result_truncated: serde_json::Value,
}

/// One row of the query: a VM with one of its IP configurations.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct GraphRow {
    id: String,
    vm_name: String,
    power_state: String,
    provisioning_state: String,
    private_ip: String,
    prefix_length: String,
    public_ip: String,
    fqdn: String,
}

/// An ARM error body's code and message. ARM wraps them in `error`; Compute's
/// throttling answer has them at the top (`{"code": "OperationNotAllowed", ...}`).
/// The message loses a final full stop: it is quoted inside sentences of ours.
fn error_body(body: &str) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let field = |name: &str| {
        v["error"][name]
            .as_str()
            .or_else(|| v[name].as_str())
            .map(str::to_string)
    };
    let message: String = field("message")
        .unwrap_or_else(|| body.trim().to_string())
        .chars()
        .take(300)
        .collect();
    let message = message.trim().trim_end_matches('.').to_string();
    let message = if message.is_empty() {
        "(no message)".to_string()
    } else {
        message
    };
    (field("code").unwrap_or_else(|| "unknown".into()), message)
}

/// The scope an `AuthorizationFailed` message names ("... over scope '/subscriptions/
/// .../resourceGroups/x' or the scope is invalid"), if it names one.
fn refused_scope(message: &str) -> Option<String> {
    let at = message.find("over scope '")? + "over scope '".len();
    let scope = message[at..].split('\'').next()?;
    (!scope.is_empty()).then(|| scope.to_string())
}

/// The name after `/<kind>/` in an ARM id (`virtualmachines`, `resourcegroups`).
fn id_part(id: &str, kind: &str) -> Option<String> {
    let marker = format!("/{kind}/");
    let at = id.to_ascii_lowercase().find(&marker)? + marker.len();
    id[at..]
        .split('/')
        .next()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

/// A VM's name: `name`, else the name in its id; empty when it has neither.
fn vm_name(name: Option<&str>, id: &str) -> String {
    name.filter(|n| !n.trim().is_empty())
        .map(str::to_string)
        .or_else(|| id_part(id, "virtualmachines"))
        .unwrap_or_default()
}

/// `scheme://host[:port]` of a URL, lower-cased.
fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!("{scheme}://{host}").to_ascii_lowercase()
}

fn same_origin(url: &str, endpoint: &str) -> bool {
    origin(url) == origin(endpoint)
}

/// An ARM id as a key for matching (ids differ in case between resources).
fn id_key(id: &str) -> String {
    id.trim_end_matches('/').to_ascii_lowercase()
}

fn push_new(list: &mut Vec<String>, value: &str) {
    if !value.is_empty() && !list.iter().any(|v| v == value) {
        list.push(value.to_string());
    }
}

/// A private address that is the VM's own: not a block of addresses given to the
/// NIC (`privateIPAddressPrefixLength`, or the address written as a CIDR block).
fn own_address(address: Option<&str>, prefix: bool) -> Option<&str> {
    address.filter(|ip| !prefix && !ip.contains('/') && !ip.is_empty())
}

/// A KQL string literal.
fn kql_string(text: &str) -> String {
    let mut out = String::from("'");
    for c in text.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The Resource Graph query of one resource group's VMs: one row per VM and IP
/// configuration, the NICs and public IPs joined by id wherever they live.
fn graph_query(resource_group: &str) -> String {
    format!(
        "Resources \
| where type =~ 'microsoft.compute/virtualmachines' and resourceGroup =~ {rg} \
| project id = tolower(id), vmName = name, \
powerState = tostring(properties.extended.instanceView.powerState.code), \
provisioningState = tostring(properties.provisioningState), \
nics = properties.networkProfile.networkInterfaces \
| mv-expand nic = nics \
| extend nicId = tolower(tostring(nic.id)) \
| join kind=leftouter (Resources \
| where type =~ 'microsoft.network/networkinterfaces' \
| mv-expand ipconfig = properties.ipConfigurations \
| project nicId = tolower(id), \
privateIp = tostring(ipconfig.properties.privateIPAddress), \
prefixLength = tostring(ipconfig.properties.privateIPAddressPrefixLength), \
publicIpId = tolower(tostring(ipconfig.properties.publicIPAddress.id))) on nicId \
| join kind=leftouter (Resources \
| where type =~ 'microsoft.network/publicipaddresses' \
| project publicIpId = tolower(id), publicIp = tostring(properties.ipAddress), \
fqdn = tostring(properties.dnsSettings.fqdn)) on publicIpId \
| project id, vmName, powerState, provisioningState, privateIp, prefixLength, publicIp, fqdn \
| order by id asc",
        rg = kql_string(resource_group)
    )
}

/// The VMs of a Resource Graph answer, one per id, in the order of their names.
fn vms_from_rows(rows: &[GraphRow]) -> Vec<VmState> {
    let mut by_id: BTreeMap<String, VmState> = BTreeMap::new();
    for row in rows {
        let vm = by_id.entry(id_key(&row.id)).or_insert_with(|| VmState {
            name: vm_name(Some(&row.vm_name), &row.id),
            power_state: row
                .power_state
                .strip_prefix("PowerState/")
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown")
                .to_string(),
            provisioning_state: Some(row.provisioning_state.to_ascii_lowercase())
                .filter(|s| !s.is_empty()),
            private_ips: Vec::new(),
            public_ips: Vec::new(),
            fqdns: Vec::new(),
        });
        if let Some(ip) = own_address(Some(&row.private_ip), !row.prefix_length.is_empty()) {
            push_new(&mut vm.private_ips, ip);
        }
        push_new(&mut vm.public_ips, &row.public_ip);
        push_new(&mut vm.fqdns, &row.fqdn);
    }
    finish(by_id.into_values().collect())
}

/// A VM with neither a name nor an id says nothing that can be a fact; the rest in
/// the order of their names.
fn finish(mut vms: Vec<VmState>) -> Vec<VmState> {
    vms.retain(|v| !v.name.is_empty());
    vms.sort_by(|a, b| a.name.cmp(&b.name));
    vms
}

/// How a request is sent.
enum Method<'a> {
    Get,
    Post(&'a serde_json::Value),
}

/// What a request is about, for its errors.
#[derive(Clone, Copy)]
struct Context<'a> {
    what: &'a str,
    subscription: &'a str,
    resource_group: &'a str,
}

impl ArmClient {
    /// A client of `endpoint` (normally [`PUBLIC_ENDPOINT`]; a local fake in tests).
    pub fn new(endpoint: &str, credential: Arc<dyn TokenCredential>, retry: Retry) -> Self {
        use_ring_for_tls();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            scope: ARM_SCOPE.to_string(),
            credential,
            retry,
            requests: AtomicU32::new(0),
        }
    }

    /// Tokens for `scope` (a sovereign cloud's Resource Manager) instead of the
    /// public cloud's.
    pub fn with_scope(mut self, scope: &str) -> Self {
        self.scope = scope.to_string();
        self
    }

    /// Every ARM request this client made.
    pub fn requests(&self) -> u32 {
        self.requests.load(Ordering::SeqCst)
    }

    async fn token(&self) -> Result<String, ArmError> {
        let token = self
            .credential
            .get_token(&[self.scope.as_str()], None)
            .await
            .map_err(|e| ArmError::Token(e.to_string()))?;
        Ok(token.token.secret().to_string())
    }

    /// One refresh of `resource_group`'s VMs with power states, IPs and FQDNs: one
    /// Resource Graph query, or the resource group's lists when Resource Graph
    /// cannot answer (the snapshot's `source` says which, and why).
    pub async fn resource_group(
        &self,
        subscription: &str,
        resource_group: &str,
    ) -> Result<Snapshot, ArmError> {
        let before = self.requests();
        let token = self.token().await?;
        let reason = match self.graph(&token, subscription, resource_group).await {
            Ok(vms) if !vms.is_empty() => {
                return Ok(Snapshot {
                    vms,
                    requests: self.requests() - before,
                    source: Source::ResourceGraph,
                    notes: Vec::new(),
                });
            }
            // No VM: a group being created, or one the identity cannot see. The
            // lists tell these apart (and name a missing group or a refusal).
            Ok(_) => "Resource Graph found no VM in the resource group".to_string(),
            Err(e) if e.lists_may_answer() => format!("Resource Graph: {e}"),
            Err(e) => return Err(e),
        };
        let (vms, notes) = self.lists(&token, subscription, resource_group).await?;
        Ok(Snapshot {
            vms,
            requests: self.requests() - before,
            source: Source::Lists { reason },
            notes,
        })
    }

    /// The same refresh from the resource group's lists only (what the fallback does).
    pub async fn resource_group_lists(
        &self,
        subscription: &str,
        resource_group: &str,
    ) -> Result<Snapshot, ArmError> {
        let before = self.requests();
        let token = self.token().await?;
        let (vms, notes) = self.lists(&token, subscription, resource_group).await?;
        Ok(Snapshot {
            vms,
            requests: self.requests() - before,
            source: Source::Lists {
                reason: "asked for the lists".into(),
            },
            notes,
        })
    }

    /// The Resource Graph query, every page.
    async fn graph(
        &self,
        token: &str,
        subscription: &str,
        resource_group: &str,
    ) -> Result<Vec<VmState>, ArmError> {
        let url = format!(
            "{}/providers/Microsoft.ResourceGraph/resources?api-version={RESOURCE_GRAPH_API}",
            self.endpoint
        );
        let ctx = Context {
            what: "the Resource Graph query",
            subscription,
            resource_group,
        };
        let mut rows = Vec::new();
        let mut skip_token: Option<String> = None;
        loop {
            let mut options = serde_json::json!({"resultFormat": "objectArray", "$top": 1000});
            if let Some(t) = &skip_token {
                options["$skipToken"] = t.clone().into();
            }
            let body = serde_json::json!({
                "subscriptions": [subscription],
                "query": graph_query(resource_group),
                "options": options,
            });
            let page: GraphPage = self.send(token, Method::Post(&body), &url, ctx).await?;
            rows.extend(page.data);
            match page.skip_token.filter(|t| !t.is_empty()) {
                Some(t) => skip_token = Some(t),
                None if page.result_truncated == "true" || page.result_truncated == true => {
                    return Err(ArmError::Unexpected {
                        what: ctx.what.into(),
                        reason: "the answer was truncated without a way to the rest".into(),
                    });
                }
                None => return Ok(vms_from_rows(&rows)),
            }
        }
    }

    /// The resource group's lists, and each NIC or public IP of another resource
    /// group that one of its VMs uses.
    async fn lists(
        &self,
        token: &str,
        subscription: &str,
        resource_group: &str,
    ) -> Result<(Vec<VmState>, Vec<String>), ArmError> {
        let rg_path = format!("/subscriptions/{subscription}/resourceGroups/{resource_group}");
        let ctx = |what| Context {
            what,
            subscription,
            resource_group,
        };
        // The resource group's lists first: a missing group is said as such.
        let nics = self
            .list(
                token,
                &format!(
                    "{rg_path}/providers/Microsoft.Network/networkInterfaces?api-version={NETWORK_API}"
                ),
                ctx("the network interfaces"),
            )
            .await?;
        let public = self
            .list(
                token,
                &format!(
                    "{rg_path}/providers/Microsoft.Network/publicIPAddresses?api-version={NETWORK_API}"
                ),
                ctx("the public IP addresses"),
            )
            .await?;
        let vms = self
            .list(
                token,
                // The resource group's own list with each VM's instance view (its
                // power state): Reader on the resource group is enough, where the
                // subscription's `statusOnly` list needs rights on the subscription.
                &format!(
                    "{rg_path}/providers/Microsoft.Compute/virtualMachines?api-version={COMPUTE_API}&$expand=instanceView"
                ),
                ctx("the VM power states"),
            )
            .await?;
        let marker = format!("/resourcegroups/{}/", resource_group.to_ascii_lowercase());
        let vms: Vec<&serde_json::Value> = vms
            .iter()
            .filter(|vm| {
                vm["id"]
                    .as_str()
                    .is_some_and(|id| id.to_ascii_lowercase().contains(&marker))
            })
            .collect();
        let mut notes = Vec::new();
        // NICs by id: the group's, then those of other groups its VMs name.
        // (One without an id still counts by the VM it names.)
        let mut nic_by_id: BTreeMap<String, serde_json::Value> = nics
            .into_iter()
            .enumerate()
            .map(|(i, n)| {
                let key = n["id"].as_str().map_or_else(|| format!("#{i}"), id_key);
                (key, n)
            })
            .collect();
        // (Keyed in lower case, asked for as written: ARM ids ignore case, but a
        // resource is asked for by its own.)
        let named: BTreeMap<String, String> = vms
            .iter()
            .flat_map(|vm| network_interfaces(vm))
            .map(|id| (id_key(&id), id))
            .collect();
        self.add_linked(
            token,
            &mut nic_by_id,
            named,
            "network interface",
            ctx("a network interface"),
            &mut notes,
        )
        .await?;
        let mut public_by_id: BTreeMap<String, serde_json::Value> = public
            .into_iter()
            .filter_map(|p| Some((id_key(p["id"].as_str()?), p)))
            .collect();
        let wanted: BTreeMap<String, String> = nic_by_id
            .values()
            .flat_map(ip_configurations)
            .filter_map(|cfg| cfg["properties"]["publicIPAddress"]["id"].as_str())
            .map(|id| (id_key(id), id.to_string()))
            .collect();
        self.add_linked(
            token,
            &mut public_by_id,
            wanted,
            "public IP address",
            ctx("a public IP address"),
            &mut notes,
        )
        .await?;
        let out = vms
            .iter()
            .map(|vm| vm_state(vm, &nic_by_id, &public_by_id))
            .collect();
        Ok((finish(out), notes))
    }

    /// Adds to `by_id` each resource of `wanted` (by lower-case id, the id as written)
    /// that it lacks, asked for on its own (it lives in another resource group); one
    /// that cannot be read is a note.
    async fn add_linked(
        &self,
        token: &str,
        by_id: &mut BTreeMap<String, serde_json::Value>,
        wanted: BTreeMap<String, String>,
        kind: &str,
        ctx: Context<'_>,
        notes: &mut Vec<String>,
    ) -> Result<(), ArmError> {
        for (key, id) in wanted {
            if let std::collections::btree_map::Entry::Vacant(slot) = by_id.entry(key) {
                match self.linked(token, &id, kind, ctx).await? {
                    Ok(resource) => {
                        slot.insert(resource);
                    }
                    Err(note) => notes.push(note),
                }
            }
        }
        Ok(())
    }

    /// A resource of another resource group that a VM links to. Not being allowed to
    /// read it, or its absence, is a note (`Err`), not a failed refresh.
    async fn linked(
        &self,
        token: &str,
        id: &str,
        kind: &str,
        ctx: Context<'_>,
    ) -> Result<Result<serde_json::Value, String>, ArmError> {
        let url = format!("{}{id}?api-version={NETWORK_API}", self.endpoint);
        let group = id_part(id, "resourcegroups").unwrap_or_else(|| "?".into());
        let name = id.rsplit('/').next().unwrap_or(id);
        match self.send(token, Method::Get, &url, ctx).await {
            Ok(v) => Ok(Ok(v)),
            Err(ArmError::Forbidden { code, .. }) => Ok(Err(format!(
                "{kind} `{name}` in resource group `{group}` could not be read ({code}): its addresses are not known; give the identity the Reader role on `{group}` too"
            ))),
            Err(ArmError::Server { status: 404, .. } | ArmError::ResourceGroupNotFound { .. }) => {
                Ok(Err(format!(
                    "{kind} `{name}` in resource group `{group}` does not exist: the VM names one that is gone"
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// Every item of a list, following `nextLink`.
    async fn list(
        &self,
        token: &str,
        path: &str,
        ctx: Context<'_>,
    ) -> Result<Vec<serde_json::Value>, ArmError> {
        let mut url = format!("{}{path}", self.endpoint);
        let mut items = Vec::new();
        loop {
            let page: Page = self.send(token, Method::Get, &url, ctx).await?;
            items.extend(page.value);
            match page.next_link {
                // The bearer token goes only where the endpoint is: a link elsewhere
                // is not followed.
                Some(next) if !next.is_empty() && !same_origin(&next, &self.endpoint) => {
                    return Err(ArmError::Unexpected {
                        what: ctx.what.to_string(),
                        reason: format!(
                            "its next page is at {}, not at {}: not followed, so the token is not sent there",
                            origin(&next),
                            self.endpoint
                        ),
                    });
                }
                Some(next) if !next.is_empty() => url = next,
                _ => return Ok(items),
            }
        }
    }

    /// One request, retried on 429 (after `Retry-After`), 5xx, reset connections and
    /// timeouts (with the policy), within the policy's total time.
    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        method: Method<'_>,
        url: &str,
        ctx: Context<'_>,
    ) -> Result<T, ArmError> {
        let started = Instant::now();
        let total = self.retry.total;
        let gave_up = |attempts: u32, last: String| ArmError::GaveUp {
            what: ctx.what.to_string(),
            attempts,
            elapsed_s: started.elapsed().as_secs(),
            total_s: total.as_secs(),
            last,
        };
        let mut attempt = 1;
        loop {
            self.requests.fetch_add(1, Ordering::SeqCst);
            let last_try = attempt >= self.retry.attempts;
            // No answer is waited for past the total.
            let left = total.saturating_sub(started.elapsed());
            let request = match method {
                Method::Get => self.http.get(url),
                Method::Post(body) => self.http.post(url).json(body),
            };
            let sent = request
                .bearer_auth(token)
                .timeout(left.min(REQUEST_TIMEOUT).max(Duration::from_millis(1)))
                .send()
                .await;
            // What to do next: an answer to read, or a wait before the next attempt
            // (with what went wrong, said if the total is reached).
            let (wait, last) = match sent {
                Ok(response) => match self.answer(response, attempt, last_try, ctx).await? {
                    Ok(value) => return Ok(value),
                    Err(retry) => retry,
                },
                // A reset connection or a timeout is retried as a 5xx is.
                Err(e) if e.is_connect() || e.is_timeout() || e.is_request() => {
                    let last = error_chain(&e);
                    if last_try {
                        return Err(ArmError::Transport {
                            endpoint: self.endpoint.clone(),
                            source: e,
                        });
                    }
                    (self.retry.delay_before(attempt + 1), last)
                }
                Err(e) => {
                    return Err(ArmError::Transport {
                        endpoint: self.endpoint.clone(),
                        source: e,
                    });
                }
            };
            if started.elapsed() + wait >= total {
                return Err(gave_up(attempt, last));
            }
            attempt += 1;
            tokio::time::sleep(wait).await;
        }
    }

    /// A response read: the value (`Ok(Ok)`), a wait and the reason before trying again
    /// (`Ok(Err)`), or the error it is.
    async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        response: reqwest::Response,
        attempt: u32,
        last_try: bool,
        ctx: Context<'_>,
    ) -> Result<Result<T, (Duration, String)>, ArmError> {
        let status = response.status().as_u16();
        let path = response.url().path().to_string();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = response
            .text()
            .await
            .map_err(|source| ArmError::Transport {
                endpoint: self.endpoint.clone(),
                source,
            })?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&body)
                .map(Ok)
                .map_err(|e| ArmError::Unexpected {
                    what: ctx.what.to_string(),
                    reason: e.to_string(),
                });
        }
        let (code, message) = error_body(&body);
        let last = format!("{status} ({code}) {message}");
        let wait = match (status, retry_after) {
            (401, _) => return Err(ArmError::Unauthenticated { code, message }),
            (403, _) => {
                return Err(ArmError::Forbidden {
                    scope: refused_scope(&message).unwrap_or(path),
                    code,
                    message,
                    resource_group: ctx.resource_group.to_string(),
                });
            }
            (400 | 404, _) if code == "SubscriptionNotFound" || code == "InvalidSubscriptionId" => {
                return Err(ArmError::SubscriptionNotFound {
                    subscription: ctx.subscription.to_string(),
                    code,
                    message,
                });
            }
            (404, _) if code == "ResourceGroupNotFound" => {
                return Err(ArmError::ResourceGroupNotFound {
                    subscription: ctx.subscription.to_string(),
                    resource_group: ctx.resource_group.to_string(),
                });
            }
            (429, Some(seconds)) if last_try || Duration::from_secs(seconds) > MAX_RETRY_AFTER => {
                return Err(ArmError::Throttled { seconds });
            }
            (429, Some(seconds)) => Duration::from_secs(seconds),
            (429 | 500.., _) if !last_try => self.retry.delay_before(attempt + 1),
            _ => {
                return Err(ArmError::Server {
                    status,
                    code,
                    message,
                    what: ctx.what.to_string(),
                    attempts: attempt,
                });
            }
        };
        Ok(Err((wait, last)))
    }
}

/// One VM of the resource group's lists: its power and provisioning states (from its
/// instance view), and the addresses and DNS names of its NICs (those it names and
/// those that name it) and of their public IPs.
fn vm_state(
    vm: &serde_json::Value,
    nic_by_id: &BTreeMap<String, serde_json::Value>,
    public_by_id: &BTreeMap<String, serde_json::Value>,
) -> VmState {
    let id = id_key(vm["id"].as_str().unwrap_or(""));
    let statuses = vm["properties"]["instanceView"]["statuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let status = |prefix: &str| {
        statuses.iter().find_map(|s| {
            s["code"]
                .as_str()
                .and_then(|c| c.strip_prefix(prefix))
                .map(str::to_string)
        })
    };
    let mut state = VmState {
        name: vm_name(vm["name"].as_str(), vm["id"].as_str().unwrap_or("")),
        power_state: status("PowerState/").unwrap_or_else(|| "unknown".into()),
        provisioning_state: status("ProvisioningState/")
            .or_else(|| {
                vm["properties"]["provisioningState"]
                    .as_str()
                    .map(str::to_string)
            })
            .map(|s| s.to_ascii_lowercase()),
        private_ips: Vec::new(),
        public_ips: Vec::new(),
        fqdns: Vec::new(),
    };
    // The VM's NICs: those it names, and those that name it.
    let mine: BTreeSet<String> = network_interfaces(vm).iter().map(|n| id_key(n)).collect();
    let nics = nic_by_id.iter().filter(|(nic_id, nic)| {
        mine.contains(*nic_id)
            || nic["properties"]["virtualMachine"]["id"]
                .as_str()
                .is_some_and(|v| id_key(v) == id)
    });
    for (_, nic) in nics {
        for cfg in ip_configurations(nic) {
            let prefix = cfg["properties"]["privateIPAddressPrefixLength"].is_number();
            if let Some(ip) = own_address(cfg["properties"]["privateIPAddress"].as_str(), prefix) {
                push_new(&mut state.private_ips, ip);
            }
            let Some(public) = cfg["properties"]["publicIPAddress"]["id"]
                .as_str()
                .and_then(|p| public_by_id.get(&id_key(p)))
            else {
                continue;
            };
            if let Some(ip) = public["properties"]["ipAddress"].as_str() {
                push_new(&mut state.public_ips, ip);
            }
            if let Some(fqdn) = public["properties"]["dnsSettings"]["fqdn"].as_str() {
                push_new(&mut state.fqdns, fqdn);
            }
        }
    }
    state
}

/// The NIC ids a VM names (`networkProfile.networkInterfaces`).
fn network_interfaces(vm: &serde_json::Value) -> Vec<String> {
    vm["properties"]["networkProfile"]["networkInterfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["id"].as_str().map(str::to_string))
        .collect()
}

fn ip_configurations(nic: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    nic["properties"]["ipConfigurations"]
        .as_array()
        .into_iter()
        .flatten()
}

/// An error with its causes ("error sending request: connection reset").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// How to reach Azure: which cloud, which sign-in, which tenant and identity. Built
/// from the installer's configuration (`azure` in installer-config.json); never
/// holds a secret (those come from the environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `cli` (default), `client_secret`, `managed_identity` or `workload_identity`.
    pub credential: String,
    pub tenant_id: Option<String>,
    /// A user-assigned managed identity's, or a workload identity's, client id.
    pub client_id: Option<String>,
    /// The subscription, which the CLI login is told so that it signs in to its tenant.
    pub subscription: Option<String>,
    /// `public` (default), `usgovernment` or `china`.
    pub cloud: Option<String>,
    /// Resource Manager's address, overriding the cloud's.
    pub endpoint: Option<String>,
    /// The sign-in authority, overriding the cloud's.
    pub authority_host: Option<String>,
}

/// A cloud's Resource Manager address, token scope and sign-in authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloud {
    pub endpoint: String,
    pub scope: String,
    pub authority_host: String,
}

impl Settings {
    /// Where this configuration's requests and tokens go. An unknown cloud name is an
    /// error (the configuration's check names it first).
    pub fn cloud(&self) -> Result<Cloud, ArmError> {
        let (endpoint, authority) = match self.cloud.as_deref().unwrap_or("public") {
            "public" => (PUBLIC_ENDPOINT, "https://login.microsoftonline.com"),
            "usgovernment" => (
                "https://management.usgovcloudapi.net",
                "https://login.microsoftonline.us",
            ),
            "china" => (
                "https://management.chinacloudapi.cn",
                "https://login.chinacloudapi.cn",
            ),
            other => {
                return Err(ArmError::Configuration(format!(
                    "the Azure cloud `{other}` is not one of public, usgovernment, china"
                )));
            }
        };
        Ok(Cloud {
            // The token is for the cloud's Resource Manager, also when its address is
            // overridden (a private link answers for the same audience).
            scope: format!("{endpoint}/.default"),
            endpoint: self
                .endpoint
                .clone()
                .unwrap_or_else(|| endpoint.to_string())
                .trim_end_matches('/')
                .to_string(),
            authority_host: self
                .authority_host
                .clone()
                .unwrap_or_else(|| authority.to_string())
                .trim_end_matches('/')
                .to_string(),
        })
    }

    /// The cloud as azure_identity takes it: the authority for sign-ins.
    fn identity_cloud(&self, cloud: &Cloud) -> Arc<azure_core::cloud::CloudConfiguration> {
        use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
        let known = match self.cloud.as_deref().unwrap_or("public") {
            "usgovernment" => CloudConfiguration::AzureGovernment,
            "china" => CloudConfiguration::AzureChina,
            _ => CloudConfiguration::AzurePublic,
        };
        let cfg = if self.authority_host.is_some() {
            let mut custom = CustomConfiguration::default();
            custom.authority_host = cloud.authority_host.clone();
            CloudConfiguration::from(custom)
        } else {
            known
        };
        Arc::new(cfg)
    }
}

/// reqwest is built without a default TLS provider (no C build): ring is installed
/// as the process's provider before anything builds an HTTP client, the ARM client
/// or a credential (`ClientSecretCredential` and `ManagedIdentityCredential` build
/// theirs when they are made, and panicked without one).
fn use_ring_for_tls() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Another part of the process may have installed one already: that one stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The credential these settings name, signing in at their cloud's authority: `cli`
/// (the Azure CLI login, told the subscription and tenant), `client_secret`
/// (AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and AZURE_TENANT_ID or `tenant_id`, from the
/// environment), `managed_identity` (system-assigned, or the user-assigned one of
/// `client_id`) or `workload_identity` (AZURE_FEDERATED_TOKEN_FILE).
pub fn credential_for(settings: &Settings) -> Result<Arc<dyn TokenCredential>, ArmError> {
    use_ring_for_tls();
    let token_err = |e: azure_core::Error| ArmError::Token(e.to_string());
    let cloud = settings.cloud()?;
    let client_options = || azure_core::http::ClientOptions {
        cloud: Some(settings.identity_cloud(&cloud)),
        ..Default::default()
    };
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ArmError::Token(format!("{name} is not set")))
    };
    match settings.credential.as_str() {
        "client_secret" => {
            let tenant = var("AZURE_TENANT_ID").or_else(|e| settings.tenant_id.clone().ok_or(e))?;
            let client = var("AZURE_CLIENT_ID")?;
            let secret = var("AZURE_CLIENT_SECRET")?;
            let options = azure_identity::ClientSecretCredentialOptions {
                client_options: client_options(),
            };
            let c = azure_identity::ClientSecretCredential::new(
                &tenant,
                client,
                secret.into(),
                Some(options),
            )
            .map_err(token_err)?;
            Ok(c)
        }
        "managed_identity" => {
            let options = azure_identity::ManagedIdentityCredentialOptions {
                client_options: client_options(),
                user_assigned_id: settings
                    .client_id
                    .clone()
                    .map(azure_identity::UserAssignedId::ClientId),
            };
            Ok(azure_identity::ManagedIdentityCredential::new(Some(options)).map_err(token_err)?)
        }
        "workload_identity" => {
            let options = azure_identity::WorkloadIdentityCredentialOptions {
                credential_options: azure_identity::ClientAssertionCredentialOptions {
                    client_options: client_options(),
                },
                client_id: settings.client_id.clone(),
                tenant_id: settings.tenant_id.clone(),
                ..Default::default()
            };
            Ok(
                azure_identity::WorkloadIdentityCredential::new(Some(options))
                    .map_err(token_err)?,
            )
        }
        _ => {
            let options = azure_identity::AzureCliCredentialOptions {
                subscription: settings.subscription.clone(),
                tenant_id: settings.tenant_id.clone(),
                ..Default::default()
            };
            Ok(azure_identity::AzureCliCredential::new(Some(options)).map_err(token_err)?)
        }
    }
}

/// One refresh of a resource group from synchronous code (the engine has no async
/// runtime): builds the credential of `settings` (see [`credential_for`]) and a
/// single-threaded runtime for the duration of the call.
pub fn refresh_blocking(
    settings: &Settings,
    retry: Retry,
    subscription: &str,
    resource_group: &str,
) -> Result<Snapshot, ArmError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ArmError::Unexpected {
            what: "starting the HTTP runtime".into(),
            reason: e.to_string(),
        })?;
    let cloud = settings.cloud()?;
    let mut settings = settings.clone();
    settings
        .subscription
        .get_or_insert_with(|| subscription.to_string());
    let client =
        ArmClient::new(&cloud.endpoint, credential_for(&settings)?, retry).with_scope(&cloud.scope);
    runtime.block_on(client.resource_group(subscription, resource_group))
}
