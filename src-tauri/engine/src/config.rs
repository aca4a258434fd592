//! The installer's configuration: the wizard's answers (where to deploy, the hosts,
//! the SSH user and how to authenticate, the plan with its flags and variables).
//!
//! Saved as `<env>/installer-config.json`, with the Ansible inventory
//! `<env>/inventory.yaml` generated from it. Neither ever holds a password: a
//! password is asked for when a run needs it and stays in the memory of the process
//! that runs it. `clean-state` keeps both files.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::paths::Layout;
use crate::state::lock::LockWait;
use crate::state::store::Store;
use crate::timestamp::Timestamp;

/// The environment variable a run reads the SSH password from (see `inventory_yaml`).
pub const SSH_PASSWORD_ENV: &str = "THINKUBE_SSH_PASSWORD";

/// Largest configuration or inventory file the installer reads.
const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Where the deployment goes.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// This machine, over a local connection (the `demo` plan).
    #[default]
    Local,
    /// Servers reached over SSH.
    Ssh,
    /// Azure virtual machines, reached over SSH once they exist.
    Azure,
}

/// How Ansible logs in over SSH.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SshAuth {
    /// A private key file (its path is stored, never its content).
    #[default]
    Key,
    /// A password, asked for at each run and never stored.
    Password,
    /// Keys already loaded in the user's ssh-agent.
    Agent,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// The inventory name: letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// An IPv4 or IPv6 address, or a DNS name.
    pub address: String,
    /// The SSH port, when not 22.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Its part in the Kubernetes cluster (the thinkube plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Its address on the ZeroTier overlay (the thinkube plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay_ip: Option<String>,
    /// `x86_64` (the default) or `arm64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
}

impl Host {
    pub(crate) fn ssh_port(&self) -> u16 {
        self.port.unwrap_or(22)
    }

    fn arch(&self) -> &str {
        match self.arch.as_deref() {
            Some("arm64" | "aarch64") => "arm64",
            _ => "x86_64",
        }
    }
}

/// A host's part in the Kubernetes cluster (the thinkube plan's inventory groups
/// `k8s_control_plane` and `k8s_workers`).
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Control,
    Worker,
}

/// The overlay network the cluster's nodes join.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Overlay {
    #[default]
    Zerotier,
    Tailscale,
}

/// What the thinkube plan's playbooks need besides the hosts: the earlier
/// installer's network, overlay and admin pages. Tokens are not here: a run reads
/// them from its environment ([`THINKUBE_TOKENS`]), the inventory only says where.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ThinkubeSettings {
    /// The platform's domain, e.g. `thinkube.example.com`.
    pub domain_name: String,
    /// The servers' LAN, e.g. `192.168.1.0/24`.
    pub network_cidr: String,
    /// The LAN's gateway, e.g. `192.168.1.1`.
    pub network_gateway: String,
    #[serde(default)]
    pub overlay: Overlay,
    /// ZeroTier: the network's 16-hex-digit id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zerotier_network_id: Option<String>,
    /// ZeroTier: the overlay's range, e.g. `192.168.191.0/24` (each host gets an
    /// overlay address in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay_cidr: Option<String>,
    /// Tailscale: the gateway's name on the tailnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_hostname: Option<String>,
    /// The cluster's name (default `thinkube`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// The user thinkube runs as on the servers (default: the SSH user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_username: Option<String>,
    /// For Let's Encrypt (default `admin@<domain>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_email: Option<String>,
    /// The GitHub organisation thinkube's images and repositories go to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_org: Option<String>,
}

/// A token thinkube's playbooks read from the environment of a run (never from a
/// file): its variable, what it is, whether a run needs it, and for which overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSpec {
    pub name: &'static str,
    pub what: &'static str,
    pub required: bool,
    /// Only with this overlay (`None`: with either).
    pub overlay: Option<Overlay>,
}

const fn token(
    name: &'static str,
    what: &'static str,
    required: bool,
    overlay: Option<Overlay>,
) -> TokenSpec {
    TokenSpec {
        name,
        what,
        required,
        overlay,
    }
}

/// Every token the thinkube plan's playbooks read.
pub const THINKUBE_TOKENS: &[TokenSpec] = &[
    token(
        "CLOUDFLARE_TOKEN",
        "Cloudflare API token (DNS for the certificates)",
        true,
        None,
    ),
    token("GITHUB_TOKEN", "GitHub token", true, None),
    token("HF_TOKEN", "Hugging Face token", false, None),
    token(
        "ZEROTIER_AUTH_TOKEN",
        "ZeroTier API token",
        true,
        Some(Overlay::Zerotier),
    ),
    token(
        "TAILSCALE_AUTH_KEY",
        "Tailscale auth key",
        true,
        Some(Overlay::Tailscale),
    ),
    token(
        "TAILSCALE_API_TOKEN",
        "Tailscale API token",
        true,
        Some(Overlay::Tailscale),
    ),
    token(
        "TAILSCALE_OAUTH_CLIENT_ID",
        "Tailscale OAuth client id",
        false,
        Some(Overlay::Tailscale),
    ),
    token(
        "TAILSCALE_OAUTH_CLIENT_SECRET",
        "Tailscale OAuth client secret",
        false,
        Some(Overlay::Tailscale),
    ),
    token(
        "ANSIBLE_BECOME_PASSWORD",
        "the sudo password on the servers (when sudo asks for one)",
        false,
        None,
    ),
];

impl InstallerConfig {
    /// The tokens a run of this configuration reads: the thinkube plan's for its
    /// overlay; none for other plans.
    pub fn tokens(&self) -> Vec<&'static TokenSpec> {
        let Some(t) = self.thinkube.as_ref().filter(|_| self.plan == "thinkube") else {
            return Vec::new();
        };
        THINKUBE_TOKENS
            .iter()
            .filter(|k| k.overlay.is_none_or(|o| o == t.overlay))
            .collect()
    }
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureTarget {
    pub subscription_id: String,
    pub resource_group: String,
    /// How to get a token: `cli` (the Azure CLI login), `client_secret` (from
    /// AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET in the environment),
    /// `managed_identity` or `workload_identity` (AZURE_FEDERATED_TOKEN_FILE).
    /// Credentials themselves are never stored.
    #[serde(default = "default_credential")]
    pub credential: String,
    /// The tenant to sign in to (the CLI login's, and a service principal's when
    /// AZURE_TENANT_ID is not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// A user-assigned managed identity's (or a workload identity's) client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `public` (default), `usgovernment` or `china`: its Resource Manager, token
    /// scope and sign-in authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
    /// Azure Resource Manager's address, overriding the cloud's (a private link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The sign-in authority, overriding the cloud's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_host: Option<String>,
}

fn default_credential() -> String {
    "cli".to_string()
}

impl Default for AzureTarget {
    fn default() -> Self {
        Self {
            subscription_id: String::new(),
            resource_group: String::new(),
            credential: default_credential(),
            tenant_id: None,
            client_id: None,
            cloud: None,
            endpoint: None,
            authority_host: None,
        }
    }
}

/// The wizard's answers, as saved.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InstallerConfig {
    pub target: TargetKind,
    /// Empty for `local`: the inventory is this machine.
    #[serde(default)]
    pub hosts: Vec<Host>,
    #[serde(default)]
    pub ssh_user: String,
    #[serde(default)]
    pub ssh_auth: SshAuth,
    /// For `ssh_auth: key`.
    #[serde(default)]
    pub ssh_key_path: Option<String>,
    #[serde(default)]
    pub azure: Option<AzureTarget>,
    /// A built-in plan's name or a plan file's path.
    pub plan: String,
    #[serde(default)]
    pub flags: BTreeMap<String, bool>,
    /// Plan variables; secret-looking names are refused (they are asked for per run).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// The Terraform/OpenTofu state the infrastructure facts read, if any.
    #[serde(default)]
    pub terraform: Option<crate::facts::TerraformConfig>,
    /// How long cached facts are trusted.
    #[serde(default)]
    pub freshness: crate::facts::Freshness,
    /// What the thinkube plan needs besides the hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinkube: Option<ThinkubeSettings>,
}

/// One thing wrong with a configuration, tied to the field the wizard shows it on.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldProblem {
    /// e.g. `hosts[1].address`, `ssh_user`.
    pub field: String,
    pub message: String,
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> FieldProblem {
    FieldProblem {
        field: field.into(),
        message: message.into(),
    }
}

/// A DNS name: labels of letters, digits and `-`, joined by dots; the last label
/// does not start with a digit (so `10.0.0.300` is a bad address, not a name).
fn is_hostname(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && !text
            .rsplit('.')
            .next()
            .is_some_and(|last| last.starts_with(|c: char| c.is_ascii_digit()))
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn is_host_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
}

/// An Azure subscription id: a GUID.
/// `https://...`, or `http://` to this machine (a local emulator or proxy).
fn https_or_loopback(url: &str) -> bool {
    url.starts_with("https://")
        || ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| {
                url.strip_prefix(p)
                    .is_some_and(|r| r.is_empty() || r.starts_with([':', '/']))
            })
}

fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

impl InstallerConfig {
    /// Everything wrong with it, each tied to a field; empty when it can be saved.
    pub fn problems(&self) -> Vec<FieldProblem> {
        let mut out = Vec::new();
        if self.plan.trim().is_empty() {
            out.push(problem("plan", "choose a plan"));
        }
        self.thinkube_problems(&mut out);
        if self.target == TargetKind::Local {
            return self.var_problems(out);
        }
        if self.hosts.is_empty() {
            out.push(problem("hosts", "add at least one host"));
        }
        let mut names = BTreeSet::new();
        let mut addresses = BTreeSet::new();
        for (i, h) in self.hosts.iter().enumerate() {
            if !is_host_name(&h.name) {
                out.push(problem(
                    format!("hosts[{i}].name"),
                    format!(
                        "`{}` is not a valid host name: use letters, digits, `-`, `_` and `.`, starting with a letter or digit",
                        h.name
                    ),
                ));
            } else if !names.insert(h.name.to_ascii_lowercase()) {
                out.push(problem(
                    format!("hosts[{i}].name"),
                    format!("`{}` is listed twice", h.name),
                ));
            }
            let address = h.address.trim();
            if address.parse::<IpAddr>().is_err() && !is_hostname(address) {
                out.push(problem(
                    format!("hosts[{i}].address"),
                    format!("`{}` is not an IP address or a DNS name", h.address),
                ));
            } else if !addresses.insert((address.to_ascii_lowercase(), h.ssh_port())) {
                // The same address with another port is another machine (behind NAT).
                out.push(problem(
                    format!("hosts[{i}].address"),
                    format!(
                        "{address} port {} is already the address of another host",
                        h.ssh_port()
                    ),
                ));
            }
        }
        let user_ok = !self.ssh_user.is_empty()
            && self
                .ssh_user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !user_ok {
            out.push(problem(
                "ssh_user",
                "give the SSH user name (letters, digits, `-`, `_`, `.`)",
            ));
        }
        if self.ssh_auth == SshAuth::Key
            && self
                .ssh_key_path
                .as_deref()
                .is_none_or(|p| p.trim().is_empty())
        {
            out.push(problem(
                "ssh_key_path",
                "give the path of the private key file",
            ));
        }
        if self.target == TargetKind::Azure {
            let azure = self.azure.clone().unwrap_or_default();
            if !is_guid(&azure.subscription_id) {
                out.push(problem(
                    "azure.subscription_id",
                    "the subscription id is a GUID such as 00000000-0000-0000-0000-000000000000",
                ));
            }
            if !matches!(
                azure.credential.as_str(),
                "cli" | "client_secret" | "managed_identity" | "workload_identity"
            ) {
                out.push(problem(
                    "azure.credential",
                    "the Azure credential is `cli`, `client_secret`, `managed_identity` or `workload_identity`",
                ));
            }
            for (field, value) in [
                ("azure.tenant_id", &azure.tenant_id),
                ("azure.client_id", &azure.client_id),
            ] {
                if value.as_deref().is_some_and(|v| !is_guid(v)) {
                    out.push(problem(
                        field,
                        "give a GUID such as 00000000-0000-0000-0000-000000000000, or leave it empty",
                    ));
                }
            }
            if azure
                .cloud
                .as_deref()
                .is_some_and(|c| !matches!(c, "public" | "usgovernment" | "china"))
            {
                out.push(problem(
                    "azure.cloud",
                    "the Azure cloud is `public`, `usgovernment` or `china`",
                ));
            }
            if azure
                .endpoint
                .as_deref()
                .is_some_and(|v| !https_or_loopback(v))
            {
                out.push(problem(
                    "azure.endpoint",
                    "give an https:// address (http:// only on this machine: 127.0.0.1 or localhost), or leave it empty",
                ));
            }
            // Sign-ins go over https only: azure_identity refuses any other authority,
            // this machine's included.
            if azure
                .authority_host
                .as_deref()
                .is_some_and(|v| !v.starts_with("https://") || v.len() <= "https://".len())
            {
                out.push(problem(
                    "azure.authority_host",
                    "give the sign-in authority's https:// address, or leave it empty",
                ));
            }
            let rg = &azure.resource_group;
            let rg_ok = !rg.is_empty()
                && rg.len() <= 90
                && !rg.ends_with('.')
                && rg
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'));
            if !rg_ok {
                out.push(problem(
                    "azure.resource_group",
                    "a resource group name has 1 to 90 letters, digits, `-`, `_`, `.` or parentheses",
                ));
            }
        }
        self.var_problems(out)
    }

    /// What the thinkube plan needs: servers, one of them control plane, the network
    /// and the overlay. Nothing is asked of other plans.
    fn thinkube_problems(&self, out: &mut Vec<FieldProblem>) {
        if self.plan != "thinkube" {
            return;
        }
        if self.target == TargetKind::Local {
            out.push(problem(
                "target",
                "the thinkube plan deploys to servers: choose ssh (or azure) and add them",
            ));
        }
        let Some(t) = &self.thinkube else {
            out.push(problem(
                "thinkube",
                "the thinkube plan needs its settings: the domain name, the servers' network (CIDR and gateway) and the overlay",
            ));
            return;
        };
        let domain = t.domain_name.trim();
        if !is_hostname(domain) || !domain.contains('.') {
            out.push(problem(
                "thinkube.domain_name",
                "give the platform's domain name, e.g. thinkube.example.com",
            ));
        }
        if !is_ipv4_cidr(&t.network_cidr) {
            out.push(problem(
                "thinkube.network_cidr",
                "give the servers' network as an IPv4 CIDR, e.g. 192.168.1.0/24",
            ));
        }
        if t.network_gateway
            .trim()
            .parse::<std::net::Ipv4Addr>()
            .is_err()
        {
            out.push(problem(
                "thinkube.network_gateway",
                "give the network's gateway, an IPv4 address such as 192.168.1.1",
            ));
        }
        if t.admin_email.as_deref().is_some_and(|e| !e.contains('@')) {
            out.push(problem(
                "thinkube.admin_email",
                "give an e-mail address (Let's Encrypt writes to it)",
            ));
        }
        if t.overlay == Overlay::Zerotier {
            let id_ok = t
                .zerotier_network_id
                .as_deref()
                .is_some_and(|id| id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()));
            if !id_ok {
                out.push(problem(
                    "thinkube.zerotier_network_id",
                    "the ZeroTier network id has 16 hexadecimal digits (my.zerotier.com shows it)",
                ));
            }
            let cidr = t.overlay_cidr.as_deref().unwrap_or("");
            if !is_ipv4_cidr(cidr) {
                out.push(problem(
                    "thinkube.overlay_cidr",
                    "give the ZeroTier overlay's range as an IPv4 CIDR, e.g. 192.168.191.0/24",
                ));
            }
            for (i, h) in self.hosts.iter().enumerate() {
                let ok = h
                    .overlay_ip
                    .as_deref()
                    .is_some_and(|ip| ip.trim().parse::<std::net::Ipv4Addr>().is_ok());
                if !ok {
                    out.push(problem(
                        format!("hosts[{i}].overlay_ip"),
                        format!("give {}'s address on the ZeroTier overlay", h.name),
                    ));
                }
            }
        }
        if !self.hosts.is_empty() && !self.hosts.iter().any(|h| h.role == Some(Role::Control)) {
            out.push(problem(
                "hosts",
                "mark at least one host as control plane (role control); the others may be workers",
            ));
        }
    }

    /// The flags the thinkube plan takes from these answers (its overlay, workers).
    pub fn thinkube_flags(&self) -> BTreeMap<String, bool> {
        let Some(t) = &self.thinkube else {
            return BTreeMap::new();
        };
        BTreeMap::from([
            ("tailscale".to_string(), t.overlay == Overlay::Tailscale),
            (
                "workers".to_string(),
                self.hosts.iter().any(|h| h.role == Some(Role::Worker)),
            ),
        ])
    }

    /// The configuration as it is saved and run: for the thinkube plan, its overlay
    /// and workers flags and its domain variable follow the answers they are about.
    pub fn with_derived(&self) -> InstallerConfig {
        let mut c = self.clone();
        if c.plan == "thinkube" {
            c.flags.extend(self.thinkube_flags());
            c.vars.extend(self.thinkube_vars());
        }
        c
    }

    /// The variables the thinkube plan takes from these answers: its domain (the
    /// completion page's addresses use it). An empty domain sets nothing.
    pub fn thinkube_vars(&self) -> BTreeMap<String, String> {
        self.thinkube
            .as_ref()
            .map(|t| t.domain_name.trim().to_string())
            .filter(|d| !d.is_empty())
            .map(|d| BTreeMap::from([("domain_name".to_string(), d)]))
            .unwrap_or_default()
    }

    fn var_problems(&self, mut out: Vec<FieldProblem>) -> Vec<FieldProblem> {
        if let Some(tf) = &self.terraform {
            if tf.backend == "local" && tf.state_path.as_deref().is_none_or(|p| p.trim().is_empty())
            {
                out.push(problem(
                    "terraform.state_path",
                    "a local Terraform backend needs the path of terraform.tfstate",
                ));
            }
            for key in tf.backend_config.keys() {
                if crate::secrets::is_secret_key(key)
                    || key.to_ascii_lowercase().contains("key")
                        && key.to_ascii_lowercase().contains("access")
                {
                    out.push(problem(
                        format!("terraform.backend_config.{key}"),
                        format!("`{key}` looks like a credential; credentials are never stored (Terraform reads them from its environment)"),
                    ));
                }
            }
        }
        for key in self.vars.keys() {
            if crate::secrets::is_secret_key(key) {
                out.push(problem(
                    format!("vars.{key}"),
                    format!("`{key}` looks like a secret; secrets are asked for at each run and never saved"),
                ));
            }
        }
        out
    }

    /// The Ansible inventory for these answers (YAML; no password ever).
    pub(crate) fn inventory_yaml(&self) -> String {
        let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let mut out =
            String::from("# Written by the Thinkube installer from installer-config.json.\nall:\n");
        if self.target == TargetKind::Local {
            out.push_str("  hosts:\n    localhost:\n      ansible_connection: local\n");
            return out;
        }
        if let (true, Some(t)) = (self.plan == "thinkube", &self.thinkube) {
            return self.thinkube_inventory(t);
        }
        out.push_str("  vars:\n");
        out.push_str(&format!("    ansible_user: {}\n", quote(&self.ssh_user)));
        if self.ssh_auth == SshAuth::Password {
            // The password itself is handed to each run in memory, never written.
            out.push_str(&format!(
                "    ansible_password: \"{{{{ lookup('env', '{SSH_PASSWORD_ENV}') }}}}\"\n"
            ));
        }
        if let (SshAuth::Key, Some(key)) = (self.ssh_auth, &self.ssh_key_path) {
            out.push_str(&format!(
                "    ansible_ssh_private_key_file: {}\n",
                quote(key)
            ));
        }
        out.push_str("  hosts:\n");
        for h in &self.hosts {
            out.push_str(&format!(
                "    {}:\n      ansible_host: {}\n",
                quote(&h.name),
                quote(h.address.trim())
            ));
            if let Some(port) = h.port {
                out.push_str(&format!("      ansible_port: {port}\n"));
            }
        }
        out
    }
}

impl InstallerConfig {
    /// The inventory in thinkube's layout, as the earlier installer's generator
    /// writes it (frontend/src/utils/inventoryGenerator.js), from these answers.
    /// Tokens are `lookup('env', ...)` of [`THINKUBE_TOKENS`]: never in the file.
    fn thinkube_inventory(&self, t: &ThinkubeSettings) -> String {
        use serde_json::{Map, Value, json};
        let env = |name: &str| Value::String(format!("{{{{ lookup('env', '{name}') }}}}"));
        let domain = t.domain_name.trim();
        let mut vars = Map::new();
        let mut set = |k: &str, v: Value| {
            vars.insert(k.to_string(), v);
        };
        set("domain_name", json!(domain));
        set(
            "cluster_name",
            json!(t.cluster_name.as_deref().unwrap_or("thinkube")),
        );
        set("admin_username", json!("tkadmin"));
        set(
            "system_username",
            json!(t.system_username.as_deref().unwrap_or(&self.ssh_user)),
        );
        set("auth_realm_username", json!("thinkube"));
        set("ansible_python_interpreter", json!("/usr/bin/python3"));
        set("ansible_become_pass", env("ANSIBLE_BECOME_PASSWORD"));
        set("network_cidr", json!(t.network_cidr.trim()));
        set("network_gateway", json!(t.network_gateway.trim()));
        set("dns_servers", json!(["8.8.8.8", "8.8.4.4"]));
        set("dns_search_domains", json!([]));
        set("network_mode", json!("overlay"));
        set("cloudflare_api_token", env("CLOUDFLARE_TOKEN"));
        set("github_org", json!(t.github_org.as_deref().unwrap_or("")));
        set("github_token", env("GITHUB_TOKEN"));
        set(
            "admin_email",
            json!(
                t.admin_email
                    .clone()
                    .unwrap_or_else(|| format!("admin@{domain}"))
            ),
        );
        set("container_build_platforms", json!("linux/amd64"));
        self.ssh_vars(&mut vars);
        match t.overlay {
            Overlay::Zerotier => {
                let cidr = t.overlay_cidr.as_deref().unwrap_or("").trim();
                let prefix = subnet_prefix(cidr);
                vars.insert("overlay_provider".into(), json!("zerotier"));
                vars.insert("overlay_cidr".into(), json!(cidr));
                vars.insert("overlay_subnet_prefix".into(), json!(prefix));
                vars.insert(
                    "zerotier_network_id".into(),
                    json!(t.zerotier_network_id.as_deref().unwrap_or("")),
                );
                vars.insert("zerotier_api_token".into(), env("ZEROTIER_AUTH_TOKEN"));
                vars.insert("lb_ip_start_octet".into(), json!("200"));
                vars.insert("lb_ip_end_octet".into(), json!("210"));
                vars.insert("primary_gateway_ip_octet".into(), json!("200"));
                vars.insert("primary_gateway_ip".into(), json!(format!("{prefix}200")));
            }
            Overlay::Tailscale => {
                vars.insert("overlay_provider".into(), json!("tailscale"));
                vars.insert("tailscale_auth_key".into(), env("TAILSCALE_AUTH_KEY"));
                vars.insert("tailscale_api_token".into(), env("TAILSCALE_API_TOKEN"));
                vars.insert(
                    "tailscale_oauth_client_id".into(),
                    env("TAILSCALE_OAUTH_CLIENT_ID"),
                );
                vars.insert(
                    "tailscale_oauth_client_secret".into(),
                    env("TAILSCALE_OAUTH_CLIENT_SECRET"),
                );
                vars.insert(
                    "gateway_hostname".into(),
                    json!(t.gateway_hostname.as_deref().unwrap_or("")),
                );
            }
        }
        let names = |f: &dyn Fn(&Host) -> bool| -> Value {
            Value::Object(
                self.hosts
                    .iter()
                    .filter(|h| f(h))
                    .map(|h| (h.name.clone(), json!({})))
                    .collect(),
            )
        };
        let mut baremetal = Map::new();
        for h in &self.hosts {
            let mut def = Map::new();
            def.insert("ansible_host".into(), json!(h.address.trim()));
            if let Some(port) = h.port {
                def.insert("ansible_port".into(), json!(port));
            }
            def.insert("lan_ip".into(), json!(h.address.trim()));
            def.insert("arch".into(), json!(h.arch()));
            if let Some(ip) = &h.overlay_ip {
                def.insert("overlay_ip".into(), json!(ip.trim()));
            }
            def.insert("configure_gpu_passthrough".into(), json!(false));
            baremetal.insert(h.name.clone(), Value::Object(def));
        }
        let mut controller = json!({
            "ansible_connection": "local",
            "ansible_host": "127.0.0.1",
            "lan_ip": "127.0.0.1",
            "arch": "x86_64",
        });
        if t.overlay == Overlay::Zerotier {
            controller["overlay_ip"] = json!(format!(
                "{}10",
                subnet_prefix(t.overlay_cidr.as_deref().unwrap_or(""))
            ));
        }
        let mut overlay_nodes = names(&|_| true);
        overlay_nodes["controller"] = json!({});
        let mut x86 = names(&|h| h.arch() == "x86_64");
        x86["controller"] = json!({});
        let inventory = json!({
            "all": {
                "vars": Value::Object(vars),
                "children": {
                    "arch": {"children": {
                        "x86_64": {"hosts": x86},
                        "arm64": {"hosts": names(&|h| h.arch() == "arm64")},
                    }},
                    "baremetal": {
                        "hosts": Value::Object(baremetal),
                        "children": {
                            "headless": {"hosts": names(&|_| true)},
                            "desktops": {"hosts": {}},
                            "dgx": {"hosts": {}},
                        },
                    },
                    "k8s": {"children": {
                        "k8s_control_plane": {"hosts": names(&|h| h.role == Some(Role::Control))},
                        "k8s_workers": {"hosts": names(&|h| h.role == Some(Role::Worker))},
                    }},
                    "k8s_cluster": {"children": {"k8s_control_plane": {}, "k8s_workers": {}}},
                    "overlay_nodes": {"hosts": overlay_nodes},
                    "management": {"hosts": {"controller": controller}},
                    "baremetal_gpus": {"vars": {}},
                },
            }
        });
        let mut out = String::from(
            "# Written by the Thinkube installer from installer-config.json, in the layout of\n# the earlier thinkube installer's inventory (no token: each is read from the\n# environment of the run).\n",
        );
        yaml_block(&inventory, 0, &mut out);
        out
    }

    /// How Ansible logs in: the user, the password's environment variable, the key.
    fn ssh_vars(&self, vars: &mut serde_json::Map<String, serde_json::Value>) {
        vars.insert("ansible_user".into(), self.ssh_user.clone().into());
        if self.ssh_auth == SshAuth::Password {
            vars.insert(
                "ansible_password".into(),
                format!("{{{{ lookup('env', '{SSH_PASSWORD_ENV}') }}}}").into(),
            );
        }
        if let (SshAuth::Key, Some(key)) = (self.ssh_auth, &self.ssh_key_path) {
            vars.insert("ansible_ssh_private_key_file".into(), key.clone().into());
        }
    }
}

/// `192.168.191.` of `192.168.191.0/24`: the prefix thinkube's playbooks add the
/// last octet to.
fn subnet_prefix(cidr: &str) -> String {
    let ip = cidr.split('/').next().unwrap_or("");
    let parts: Vec<&str> = ip.split('.').collect();
    match parts.as_slice() {
        [a, b, c, _] => format!("{a}.{b}.{c}."),
        _ => String::new(),
    }
}

/// An IPv4 network such as `10.0.0.0/24`.
fn is_ipv4_cidr(text: &str) -> bool {
    match text.trim().split_once('/') {
        Some((ip, bits)) => {
            ip.parse::<std::net::Ipv4Addr>().is_ok() && bits.parse::<u8>().is_ok_and(|b| b <= 32)
        }
        None => false,
    }
}

/// Writes `value` (a tree of mappings) as block YAML; every scalar and list is
/// written as JSON, which YAML reads as it is (strings double-quoted).
fn yaml_block(value: &serde_json::Value, indent: usize, out: &mut String) {
    let Some(map) = value.as_object() else {
        return;
    };
    for (key, v) in map {
        let key_text = if key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            && !key.is_empty()
        {
            key.clone()
        } else {
            serde_json::to_string(key).unwrap_or_default()
        };
        out.push_str(&" ".repeat(indent));
        out.push_str(&key_text);
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                out.push_str(":\n");
                yaml_block(v, indent + 2, out);
            }
            _ => {
                out.push_str(": ");
                out.push_str(&v.to_string());
                out.push('\n');
            }
        }
    }
}

/// The configuration file of an environment.
pub fn config_file(layout: &Layout) -> std::path::PathBuf {
    layout.root.join("installer-config.json")
}

/// The saved configuration, if any.
pub fn load(layout: &Layout) -> Result<Option<InstallerConfig>> {
    let path = config_file(layout);
    let bytes = match read_limited(&path)? {
        None => return Ok(None),
        Some(b) => b,
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        EngineError::Usage(format!(
            "the configuration {} cannot be read ({e}); fix it or save the configuration again from the wizard",
            path.display()
        ))
    })
}

/// Validates and saves the configuration and its inventory, durably, under the
/// lock (so a running deployment's inventory never changes under it).
pub fn save(store: &Store, config: &InstallerConfig, now: Timestamp) -> Result<()> {
    let problems = config.problems();
    if !problems.is_empty() {
        let text: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect();
        return Err(EngineError::Usage(format!(
            "the configuration was not saved: {}",
            text.join("; ")
        )));
    }
    let config = config.with_derived();
    let _guard = store.lock("configure", LockWait::NoWait, now)?;
    let layout = store.layout();
    let json = serde_json::to_vec_pretty(&config)
        .map_err(|e| EngineError::Internal(format!("the configuration cannot be encoded: {e}")))?;
    let fs = store.fs();
    fs.replace(&layout.inventory_file(), config.inventory_yaml().as_bytes())
        .map_err(|e| EngineError::io("write the inventory", layout.inventory_file(), e))?;
    fs.replace(&config_file(layout), &json)
        .map_err(|e| EngineError::io("write the configuration", config_file(layout), e))?;
    Ok(())
}

pub(crate) fn read_limited(path: &Path) -> Result<Option<Vec<u8>>> {
    crate::state::fsops::read_regular(path, MAX_BYTES).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => {
            EngineError::Usage(format!("{} cannot be used: {e}", path.display()))
        }
        _ => EngineError::io("read", path, e),
    })
}

/// Checks that an inventory can be used: not too large, UTF-8, and for YAML a
/// mapping of groups. The message names the file and what to do.
/// Returns the digest of the content it checked.
pub fn check_inventory(path: &Path) -> Result<String> {
    let bad = |reason: String| {
        EngineError::Usage(format!(
            "the inventory {} {reason}; fix it or give another with --inventory PATH",
            path.display()
        ))
    };
    let Some(bytes) = read_limited(path)? else {
        return Err(bad("does not exist".into()));
    };
    let digest = crate::plan::sha256(&bytes);
    let text = String::from_utf8(bytes).map_err(|_| bad("is not UTF-8 text".into()))?;
    let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    if is_yaml {
        let value: serde_json::Value = crate::yaml::from_str(&text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
                .unwrap_or_default();
            bad(format!("is not valid YAML{at}"))
        })?;
        if !(value.is_object() || value.is_null()) {
            return Err(bad(
                "is not a YAML inventory (its top level must be a mapping of groups)".into(),
            ));
        }
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thinkube_run_reads_the_tokens_of_its_overlay_and_other_plans_none() {
        let mut c = ssh(&[("tk1", "10.0.0.1")]);
        assert!(c.tokens().is_empty());
        c.plan = "thinkube".into();
        c.thinkube = Some(ThinkubeSettings::default());
        let names =
            |c: &InstallerConfig| -> Vec<&str> { c.tokens().iter().map(|t| t.name).collect() };
        assert!(names(&c).contains(&"ZEROTIER_AUTH_TOKEN"));
        assert!(!names(&c).contains(&"TAILSCALE_AUTH_KEY"));
        c.thinkube.as_mut().unwrap().overlay = Overlay::Tailscale;
        assert!(names(&c).contains(&"TAILSCALE_AUTH_KEY"));
        assert!(!names(&c).contains(&"ZEROTIER_AUTH_TOKEN"));
        // Each is a name the installer masks wherever output goes (an OAuth client's
        // id is not a secret; its secret is).
        for t in THINKUBE_TOKENS.iter().filter(|t| !t.name.ends_with("_ID")) {
            assert!(crate::secrets::is_secret_key(t.name), "{}", t.name);
        }
    }

    fn ssh(hosts: &[(&str, &str)]) -> InstallerConfig {
        InstallerConfig {
            target: TargetKind::Ssh,
            hosts: hosts
                .iter()
                .map(|(n, a)| Host {
                    name: n.to_string(),
                    address: a.to_string(),
                    ..Default::default()
                })
                .collect(),
            ssh_user: "thinkube".into(),
            ssh_auth: SshAuth::Agent,
            plan: "demo".into(),
            ..Default::default()
        }
    }

    fn fields(c: &InstallerConfig) -> Vec<String> {
        c.problems().into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn hosts_need_valid_unique_names_and_addresses() {
        assert!(fields(&ssh(&[("node1", "10.0.0.1"), ("node2", "fe80::1")])).is_empty());
        assert!(fields(&ssh(&[("n1", "gpu-1.lab.example")])).is_empty());
        assert_eq!(
            fields(&ssh(&[("node 1", "10.0.0.1"), ("n2", "10.0.0.300x")])),
            ["hosts[0].name", "hosts[1].address"]
        );
        assert_eq!(
            fields(&ssh(&[("a", "10.0.0.1"), ("A", "10.0.0.1")])),
            ["hosts[1].name", "hosts[1].address"]
        );
        assert_eq!(fields(&ssh(&[])), ["hosts"]);
        // The same address with another SSH port is another machine (behind NAT);
        // with the same port it is a duplicate.
        let mut nat = ssh(&[("a", "203.0.113.5"), ("b", "203.0.113.5")]);
        nat.hosts[1].port = Some(2222);
        assert!(fields(&nat).is_empty(), "{:?}", nat.problems());
        nat.hosts[0].port = Some(2222);
        assert_eq!(fields(&nat), ["hosts[1].address"]);
    }

    #[test]
    fn ssh_needs_a_user_and_a_key_path_when_using_a_key() {
        let mut c = ssh(&[("a", "10.0.0.1")]);
        c.ssh_user = String::new();
        c.ssh_auth = SshAuth::Key;
        assert_eq!(fields(&c), ["ssh_user", "ssh_key_path"]);
    }

    #[test]
    fn azure_needs_a_subscription_guid_and_a_resource_group() {
        let mut c = ssh(&[("a", "10.0.0.1")]);
        c.target = TargetKind::Azure;
        assert_eq!(
            fields(&c),
            ["azure.subscription_id", "azure.resource_group"]
        );
        c.azure = Some(AzureTarget {
            subscription_id: "0b1c2d3e-0000-4000-8000-00000000abcd".into(),
            resource_group: "rg-thinkube".into(),
            credential: "cli".into(),
            ..Default::default()
        });
        assert!(fields(&c).is_empty());
        // A sovereign cloud, a tenant and a user-assigned identity.
        {
            let a = c.azure.as_mut().unwrap();
            a.cloud = Some("usgovernment".into());
            a.tenant_id = Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into());
            a.client_id = Some("00000000-0000-0000-0000-000000000001".into());
            a.endpoint = Some("https://management.usgovcloudapi.net".into());
            a.authority_host = Some("https://login.microsoftonline.us".into());
        }
        assert!(fields(&c).is_empty());
        {
            let a = c.azure.as_mut().unwrap();
            a.cloud = Some("mars".into());
            a.tenant_id = Some("contoso".into());
            a.endpoint = Some("http://arm.example.com".into());
            a.authority_host = Some("http://127.0.0.1.example.com".into());
        }
        assert_eq!(
            fields(&c),
            [
                "azure.tenant_id",
                "azure.cloud",
                "azure.endpoint",
                "azure.authority_host"
            ]
        );
        {
            let a = c.azure.as_mut().unwrap();
            a.cloud = None;
            a.tenant_id = None;
            a.endpoint = Some("http://127.0.0.1:10000".into());
            a.authority_host = None;
        }
        assert!(fields(&c).is_empty());
        // A loopback http authority is refused: sign-ins are https only.
        c.azure.as_mut().unwrap().authority_host = Some("http://127.0.0.1:10001".into());
        assert_eq!(fields(&c), ["azure.authority_host"]);
        c.azure.as_mut().unwrap().authority_host = None;
        c.azure.as_mut().unwrap().credential = "password".into();
        assert_eq!(fields(&c), ["azure.credential"]);
        c.azure.as_mut().unwrap().credential = "managed_identity".into();
        assert!(fields(&c).is_empty());
    }

    #[test]
    fn secret_looking_variables_are_refused() {
        let mut c = InstallerConfig {
            plan: "demo".into(),
            ..Default::default()
        };
        c.vars.insert("ssh_password".into(), "x".into());
        c.vars.insert("demo_port".into(), "8000".into());
        assert_eq!(fields(&c), ["vars.ssh_password"]);
    }

    #[test]
    fn the_inventory_quotes_values_and_never_holds_a_password() {
        let mut c = ssh(&[("node1", "10.0.0.1")]);
        c.ssh_auth = SshAuth::Key;
        c.ssh_key_path = Some("/home/u/.ssh/id: x".into());
        let yaml = c.inventory_yaml();
        let v: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(v["all"]["hosts"]["node1"]["ansible_host"], "10.0.0.1");
        assert_eq!(
            v["all"]["vars"]["ansible_ssh_private_key_file"],
            "/home/u/.ssh/id: x"
        );
        assert!(!yaml.contains("password"));
        c.ssh_auth = SshAuth::Password;
        let v: serde_json::Value = serde_saphyr::from_str(&c.inventory_yaml()).unwrap();
        assert_eq!(
            v["all"]["vars"]["ansible_password"],
            "{{ lookup('env', 'THINKUBE_SSH_PASSWORD') }}"
        );
        let local = InstallerConfig {
            plan: "demo".into(),
            ..Default::default()
        }
        .inventory_yaml();
        let v: serde_json::Value = serde_saphyr::from_str(&local).unwrap();
        assert_eq!(
            v["all"]["hosts"]["localhost"]["ansible_connection"],
            "local"
        );
    }
}
