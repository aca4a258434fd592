//! A small Azure Resource Manager client for the installer's infrastructure facts.
//!
//! One refresh of a resource group is one bulk request set, never one request per VM,
//! each scoped to the resource group (Reader on it is enough): its VMs with their
//! instance views (`$expand=instanceView`: power states), its network interfaces
//! (private IPs, and which VM each belongs to) and its public IP addresses.
//! `nextLink` pages are followed, on the endpoint's own host only (the bearer token
//! goes nowhere else); 429 waits for `Retry-After`; 5xx, reset connections and
//! timeouts are retried with the caller's retry policy; authentication,
//! authorization, a missing subscription and a missing resource group are errors
//! that name what to fix, read from ARM's `error` body or Compute's top-level one.
//! Every request is counted.
//!
//! Why not `azure_mgmt_compute`: docs/decisions/0010-azure-arm-client.md.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use serde::{Deserialize, Serialize};

/// The token scope of Azure Resource Manager.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
/// The public cloud's Resource Manager.
pub const PUBLIC_ENDPOINT: &str = "https://management.azure.com";
const COMPUTE_API: &str = "2024-07-01";
const NETWORK_API: &str = "2024-05-01";
/// Longest `Retry-After` honoured; a longer one is an error to try later.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// How 5xx answers and throttling are retried (the engine passes its shared policy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    /// Total attempts per request, the first included.
    pub attempts: u32,
    pub delay: Duration,
    pub backoff: f64,
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
    pub provisioning_state: Option<String>,
    pub private_ips: Vec<String>,
    pub public_ips: Vec<String>,
}

/// What one refresh of a resource group learned, and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub vms: Vec<VmState>,
    /// ARM requests made by this refresh (pages and retries included).
    pub requests: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    #[error(
        "Azure rejected the credentials ({code}): {message}. Log in again with `az login`, or check AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET"
    )]
    Unauthenticated { code: String, message: String },
    #[error(
        "Azure refused access ({code}): {message}. Give the identity the Reader role on resource group `{resource_group}`"
    )]
    Forbidden {
        code: String,
        message: String,
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
    #[error("Azure is throttling requests and asks to wait {seconds} s; refresh again later")]
    Throttled { seconds: u64 },
    #[error("Azure answered {status} ({code}) to {what} after {attempts} attempts: {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
        what: String,
        attempts: u32,
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

/// A VM's name: `name`, else the name in its id; empty when it has neither.
fn vm_name(vm: &serde_json::Value) -> String {
    vm["name"]
        .as_str()
        .filter(|n| !n.trim().is_empty())
        .map(str::to_string)
        .or_else(|| {
            // `.../providers/Microsoft.Compute/virtualMachines/<name>`
            let id = vm["id"].as_str()?;
            let at = id.to_ascii_lowercase().find("/virtualmachines/")? + "/virtualmachines/".len();
            id[at..]
                .split('/')
                .next()
                .filter(|n| !n.is_empty())
                .map(str::to_string)
        })
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

/// The last path segment of an ARM id, lower-cased for matching.
fn id_key(id: &str) -> String {
    id.trim_end_matches('/').to_ascii_lowercase()
}

impl ArmClient {
    /// A client of `endpoint` (normally [`PUBLIC_ENDPOINT`]; a local fake in tests).
    pub fn new(endpoint: &str, credential: Arc<dyn TokenCredential>, retry: Retry) -> Self {
        use_ring_for_tls();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
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

    /// One bulk refresh of `resource_group`'s VMs with power states and IPs.
    pub async fn resource_group(
        &self,
        subscription: &str,
        resource_group: &str,
    ) -> Result<Snapshot, ArmError> {
        let before = self.requests();
        let token = self
            .credential
            .get_token(&[self.scope.as_str()], None)
            .await
            .map_err(|e| ArmError::Token(e.to_string()))?;
        let token = token.token.secret().to_string();
        let rg_path = format!("/subscriptions/{subscription}/resourceGroups/{resource_group}");
        let ctx = (subscription, resource_group);
        // The resource group's lists first: a missing group is said as such.
        let nics = self
            .list(
                &token,
                &format!(
                    "{rg_path}/providers/Microsoft.Network/networkInterfaces?api-version={NETWORK_API}"
                ),
                "the network interfaces",
                ctx,
            )
            .await?;
        let public = self
            .list(
                &token,
                &format!(
                    "{rg_path}/providers/Microsoft.Network/publicIPAddresses?api-version={NETWORK_API}"
                ),
                "the public IP addresses",
                ctx,
            )
            .await?;
        let vms = self
            .list(
                &token,
                // The resource group's own list with each VM's instance view (its
                // power state): Reader on the resource group is enough, where the
                // subscription's `statusOnly` list needs rights on the subscription.
                &format!(
                    "{rg_path}/providers/Microsoft.Compute/virtualMachines?api-version={COMPUTE_API}&$expand=instanceView"
                ),
                "the VM power states",
                ctx,
            )
            .await?;
        let public_by_id: BTreeMap<String, String> = public
            .iter()
            .filter_map(|p| {
                Some((
                    id_key(p["id"].as_str()?),
                    p["properties"]["ipAddress"].as_str()?.to_string(),
                ))
            })
            .collect();
        let mut ips: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
        for nic in &nics {
            let Some(vm_id) = nic["properties"]["virtualMachine"]["id"].as_str() else {
                continue;
            };
            let entry = ips.entry(id_key(vm_id)).or_default();
            for cfg in nic["properties"]["ipConfigurations"]
                .as_array()
                .into_iter()
                .flatten()
            {
                // A configuration with a prefix (`privateIPAddressPrefixLength`, or
                // the address written as a CIDR block) is a block of addresses given
                // to the NIC, not the VM's own address.
                let prefix = cfg["properties"]["privateIPAddressPrefixLength"].is_number();
                if let Some(ip) = cfg["properties"]["privateIPAddress"]
                    .as_str()
                    .filter(|ip| !prefix && !ip.contains('/'))
                {
                    entry.0.push(ip.to_string());
                }
                if let Some(ip) = cfg["properties"]["publicIPAddress"]["id"]
                    .as_str()
                    .and_then(|id| public_by_id.get(&id_key(id)))
                {
                    entry.1.push(ip.clone());
                }
            }
        }
        let marker = format!("/resourcegroups/{}/", resource_group.to_ascii_lowercase());
        let mut out: Vec<VmState> = vms
            .iter()
            .filter(|vm| {
                vm["id"]
                    .as_str()
                    .is_some_and(|id| id.to_ascii_lowercase().contains(&marker))
            })
            .map(|vm| {
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
                let (private_ips, public_ips) = ips
                    .get(&id_key(vm["id"].as_str().unwrap_or("")))
                    .cloned()
                    .unwrap_or_default();
                VmState {
                    name: vm_name(vm),
                    power_state: status("PowerState/").unwrap_or_else(|| "unknown".into()),
                    provisioning_state: status("ProvisioningState/"),
                    private_ips,
                    public_ips,
                }
            })
            .collect();
        // A VM with neither a name nor an id says nothing that can be a fact.
        out.retain(|v| !v.name.is_empty());
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Snapshot {
            vms: out,
            requests: self.requests() - before,
        })
    }

    /// Every item of a list, following `nextLink`.
    async fn list(
        &self,
        token: &str,
        path: &str,
        what: &str,
        ctx: (&str, &str),
    ) -> Result<Vec<serde_json::Value>, ArmError> {
        let mut url = format!("{}{path}", self.endpoint);
        let mut items = Vec::new();
        loop {
            let page: Page = self.get(token, &url, what, ctx).await?;
            items.extend(page.value);
            match page.next_link {
                // The bearer token goes only where the endpoint is: a link elsewhere
                // is not followed.
                Some(next) if !next.is_empty() && !same_origin(&next, &self.endpoint) => {
                    return Err(ArmError::Unexpected {
                        what: what.to_string(),
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

    /// One GET, retried on 429 (after `Retry-After`) and 5xx (with the policy).
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        url: &str,
        what: &str,
        (subscription, resource_group): (&str, &str),
    ) -> Result<T, ArmError> {
        let transport = |source| ArmError::Transport {
            endpoint: self.endpoint.clone(),
            source,
        };
        let mut attempt = 1;
        loop {
            self.requests.fetch_add(1, Ordering::SeqCst);
            let last_try = attempt >= self.retry.attempts;
            let response = match self.http.get(url).bearer_auth(token).send().await {
                Ok(r) => r,
                // A reset connection or a timeout is retried as a 5xx is.
                Err(e) if !last_try && (e.is_connect() || e.is_timeout() || e.is_request()) => {
                    tokio::time::sleep(self.retry.delay_before(attempt + 1)).await;
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(transport(e)),
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body = response.text().await.map_err(transport)?;
            if (200..300).contains(&status) {
                return serde_json::from_str(&body).map_err(|e| ArmError::Unexpected {
                    what: what.to_string(),
                    reason: e.to_string(),
                });
            }
            let (code, message) = error_body(&body);
            let wait = match (status, retry_after) {
                (401, _) => return Err(ArmError::Unauthenticated { code, message }),
                (403, _) => {
                    return Err(ArmError::Forbidden {
                        code,
                        message,
                        resource_group: resource_group.to_string(),
                    });
                }
                (400 | 404, _)
                    if code == "SubscriptionNotFound" || code == "InvalidSubscriptionId" =>
                {
                    return Err(ArmError::SubscriptionNotFound {
                        subscription: subscription.to_string(),
                        code,
                        message,
                    });
                }
                (404, _) if code == "ResourceGroupNotFound" => {
                    return Err(ArmError::ResourceGroupNotFound {
                        subscription: subscription.to_string(),
                        resource_group: resource_group.to_string(),
                    });
                }
                (429, Some(seconds))
                    if last_try || Duration::from_secs(seconds) > MAX_RETRY_AFTER =>
                {
                    return Err(ArmError::Throttled { seconds });
                }
                (429, Some(seconds)) => Duration::from_secs(seconds),
                (429 | 500.., _) if !last_try => self.retry.delay_before(attempt + 1),
                _ => {
                    return Err(ArmError::Server {
                        status,
                        code,
                        message,
                        what: what.to_string(),
                        attempts: attempt,
                    });
                }
            };
            attempt += 1;
            tokio::time::sleep(wait).await;
        }
    }
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
