//! Infrastructure facts: what a source said, when, and for how long it is trusted.
//!
//! Sources: a local Terraform/OpenTofu state (`terraform.tfstate`, format 4: its
//! outputs, with the file's sha256), and the inventory's hosts (a TCP probe of each
//! SSH port). Each refresh asks every source once and commits all it learned in one
//! change with a `facts_updated` event. Reading facts (`facts`, `status`) never
//! touches the network: it shows what is cached, its age, and whether it is stale
//! (older than its time-to-live, or its source file changed since).

pub mod hardware;
pub mod host_keys;
pub mod readiness;
pub mod validate;

use crate::state::fact_keys::{self as keys, AzureRefresh, FactKey, HostFact, VmFact};
use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{InstallerConfig, TargetKind};
use crate::error::{EngineError, Result};
use crate::state::lock::LockWait;
use crate::state::model::{EventKind, FactSource, InfraFact, NewEvent, RuntimeFact, StateFile};
use crate::state::store::Store;
use crate::timestamp::Timestamp;

/// Largest Terraform state read.
const MAX_TFSTATE_BYTES: u64 = 64 * 1024 * 1024;
/// The SSH port probe gives up after this long per host.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long each source's facts are trusted, in seconds.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Freshness {
    /// VM power states (while a deployment runs).
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub vm_seconds: u64,
    /// Terraform outputs.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub terraform_seconds: u64,
    /// SSH reachability of the inventory's hosts.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub probe_seconds: u64,
}

impl Default for Freshness {
    fn default() -> Self {
        Self {
            vm_seconds: 5 * 60,
            terraform_seconds: 60 * 60,
            probe_seconds: 5 * 60,
        }
    }
}

/// Where the Terraform (or OpenTofu) state is. Never holds a secret: backend
/// settings with secret-looking names are refused.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerraformConfig {
    /// `local`, `azurerm`, `s3`, ... Only a `local` state's outputs are read.
    #[serde(default = "local_backend")]
    pub backend: String,
    /// For `local`: the path of `terraform.tfstate`.
    #[serde(default)]
    pub state_path: Option<String>,
    /// The backend block's settings (storage account, container, key, bucket, ...).
    #[serde(default)]
    pub backend_config: BTreeMap<String, String>,
}

fn local_backend() -> String {
    "local".to_string()
}

/// A fact as `facts` shows it.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FactView {
    pub key: String,
    pub source: FactSource,
    #[cfg_attr(feature = "ts", ts(type = "unknown"))]
    pub value: serde_json::Value,
    pub fetched_at: Timestamp,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub age_seconds: i64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub ttl_seconds: u64,
    pub stale: bool,
    /// Why it is stale, in a sentence.
    pub stale_reason: Option<String>,
    pub checksum: Option<String>,
}

/// Every cached fact with its age; `current_checksums` are the sources' checksums now
/// (a local file's sha256), which make a fact stale when they differ.
pub fn view(
    state: &StateFile,
    now: Timestamp,
    current_checksums: &BTreeMap<String, Option<String>>,
) -> Vec<FactView> {
    state
        .facts
        .infrastructure
        .iter()
        .map(|f| {
            let age = f.fetched_at.seconds_until(now).max(0);
            let source_key = f.value.get("source_file").and_then(|v| v.as_str());
            let changed = source_key
                .and_then(|k| current_checksums.get(k))
                .and_then(|now_sum| match (now_sum, &f.checksum) {
                    (None, _) => Some(format!("{} is gone", source_key.unwrap_or(""))),
                    (Some(a), Some(b)) if a != b => Some(format!(
                        "{} changed since it was read",
                        source_key.unwrap_or("")
                    )),
                    _ => None,
                });
            let expired = (age > i64::try_from(f.ttl_seconds).unwrap_or(i64::MAX))
                .then(|| format!("fetched {age} s ago; trusted for {} s", f.ttl_seconds));
            let stale_reason = changed.or(expired);
            FactView {
                key: f.key.clone(),
                source: f.source,
                value: f.value.clone(),
                fetched_at: f.fetched_at,
                age_seconds: age,
                ttl_seconds: f.ttl_seconds,
                stale: stale_reason.is_some(),
                stale_reason,
                checksum: f.checksum.clone(),
            }
        })
        .collect()
}

/// The human view of `facts`.
pub(crate) fn render(facts: &[FactView]) -> String {
    if facts.is_empty() {
        return "No infrastructure facts are cached. `thinkube-deploy facts --refresh` asks the configured sources.\n"
            .to_string();
    }
    let mut out = String::new();
    for f in facts {
        let mark = if f.stale { "stale" } else { "fresh" };
        let why = f
            .stale_reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let value = f.value.get("value").unwrap_or(&f.value);
        out.push_str(&format!(
            "{:<40} {:<9} {:>6} s old  {mark}{why}\n    {value}\n",
            f.key,
            format!("{:?}", f.source).to_lowercase(),
            f.age_seconds
        ));
    }
    out
}

/// The human view of the runtime facts: what steps and gates saw, per host.
pub(crate) fn render_runtime(facts: &[RuntimeFact], now: Timestamp) -> String {
    if facts.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nRuntime facts (seen by steps and gates):\n");
    for f in facts {
        let seen = f.last_seen_true.map_or("never seen true".to_string(), |t| {
            format!("last seen true {} s ago", t.seconds_until(now).max(0))
        });
        out.push_str(&format!(
            "  {:<24} {:<28} checked {} s ago, {seen}\n",
            f.host,
            f.kind,
            f.checked_at.seconds_until(now).max(0)
        ));
    }
    out
}

/// The files the cached facts came from, with their checksums now (`None`: gone).
pub(crate) fn current_checksums(state: &StateFile) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for f in &state.facts.infrastructure {
        if let Some(path) = f.value.get("source_file").and_then(|v| v.as_str())
            && !out.contains_key(path)
        {
            let sum = crate::state::fsops::read_regular(Path::new(path), MAX_TFSTATE_BYTES)
                .ok()
                .flatten()
                .map(|b| crate::plan::sha256(&b));
            out.insert(path.to_string(), sum);
        }
    }
    out
}

/// A Terraform state's outputs, as read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TfState {
    pub path: PathBuf,
    pub sha256: String,
    pub terraform_version: Option<String>,
    pub serial: Option<u64>,
    pub lineage: Option<String>,
    /// Sensitive outputs are kept as `"(sensitive)"`, never their value.
    pub outputs: BTreeMap<String, serde_json::Value>,
}

/// Reads a local `terraform.tfstate` (format version 4).
pub(crate) fn read_tfstate(path: &Path) -> Result<TfState> {
    let bad = |reason: String| {
        EngineError::Usage(format!(
            "the Terraform state {} {reason}; check `terraform.state_path` in the configuration",
            path.display()
        ))
    };
    let bytes = crate::state::fsops::read_regular(path, MAX_TFSTATE_BYTES)
        .map_err(|e| bad(format!("cannot be read ({e})")))?
        .ok_or_else(|| bad("does not exist".into()))?;
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("is not JSON ({e})")))?;
    let version = doc.get("version").and_then(|v| v.as_u64());
    if version != Some(4) {
        return Err(bad(format!(
            "has format version {}, not 4 (Terraform 0.12 and later, OpenTofu)",
            version.map_or("none".to_string(), |v| v.to_string())
        )));
    }
    let mut outputs = BTreeMap::new();
    if let Some(map) = doc.get("outputs").and_then(|o| o.as_object()) {
        for (name, out) in map {
            let sensitive = out.get("sensitive").and_then(|s| s.as_bool()) == Some(true);
            let value = if sensitive || crate::secrets::is_secret_key(name) {
                serde_json::Value::String("(sensitive)".into())
            } else {
                out.get("value").cloned().unwrap_or(serde_json::Value::Null)
            };
            outputs.insert(name.clone(), value);
        }
    }
    Ok(TfState {
        path: path.to_path_buf(),
        sha256: crate::plan::sha256(&bytes),
        terraform_version: doc
            .get("terraform_version")
            .and_then(|v| v.as_str())
            .map(String::from),
        serial: doc.get("serial").and_then(|v| v.as_u64()),
        lineage: doc
            .get("lineage")
            .and_then(|v| v.as_str())
            .map(String::from),
        outputs,
    })
}

/// Whether a host's port answers, within `timeout`.
pub(crate) fn probe(
    address: &str,
    port: u16,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let addrs: Vec<_> = (address, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address}: {e}"))?
        .collect();
    let mut last = "no address".to_string();
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

/// What one refresh learned, before it is committed.
#[derive(Debug, Default)]
pub struct Refresh {
    pub facts: Vec<InfraFact>,
    /// Keys whose source was asked and is gone: their old facts are dropped.
    pub replaced_prefixes: Vec<String>,
    /// One line per source, for the event and the caller.
    pub summary: Vec<String>,
    /// Azure Resource Manager requests this refresh made.
    pub arm_requests: u32,
}

/// Asks every configured source once. Does not write.
pub(crate) fn gather(
    config: &InstallerConfig,
    now: Timestamp,
    probe_timeout: Duration,
) -> Result<Refresh> {
    let fresh = config.freshness;
    let mut r = Refresh::default();
    if let Some(tf) = &config.terraform {
        gather_terraform(tf, fresh, now, &mut r)?;
    }
    if let (TargetKind::Azure, Some(azure)) = (config.target, &config.azure) {
        gather_azure(azure, fresh, now, &mut r)?;
    }
    if config.target != TargetKind::Local && !config.hosts.is_empty() {
        gather_hosts(config, fresh, probe_timeout, now, &mut r);
    }
    Ok(r)
}

/// Terraform: a local state's outputs (and the state's identity); for a remote
/// backend only the reference.
fn gather_terraform(
    tf: &TerraformConfig,
    fresh: Freshness,
    now: Timestamp,
    r: &mut Refresh,
) -> Result<()> {
    r.replaced_prefixes.push(keys::TERRAFORM_PREFIX.into());
    let reference = serde_json::json!({
        "backend": tf.backend,
        "state_path": tf.state_path,
        "backend_config": tf.backend_config,
    });
    match (tf.backend.as_str(), &tf.state_path) {
        ("local", Some(path)) => {
            let st = read_tfstate(Path::new(path))?;
            let source_file = st.path.display().to_string();
            let mut value = reference.clone();
            value["source_file"] = source_file.clone().into();
            value["terraform_version"] = st.terraform_version.clone().into();
            value["serial"] = st.serial.into();
            value["lineage"] = st.lineage.clone().into();
            value["last_read_at"] = serde_json::to_value(now).unwrap_or_default();
            // Terraform rewrites its state on every successful apply or refresh.
            value["last_written_at"] = std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(Timestamp::from_system_time)
                .and_then(|t| serde_json::to_value(t).ok())
                .unwrap_or_default();
            r.facts.push(InfraFact {
                key: FactKey::TerraformState.text(),
                source: FactSource::Terraform,
                value,
                fetched_at: now,
                ttl_seconds: fresh.terraform_seconds,
                checksum: Some(st.sha256.clone()),
            });
            for (name, v) in &st.outputs {
                r.facts.push(InfraFact {
                    key: FactKey::TerraformOutput(name.clone()).text(),
                    source: FactSource::Terraform,
                    value: serde_json::json!({ "value": v, "source_file": source_file }),
                    fetched_at: now,
                    ttl_seconds: fresh.terraform_seconds,
                    checksum: Some(st.sha256.clone()),
                });
            }
            r.summary.push(format!(
                "Terraform: {} output(s) from {source_file}",
                st.outputs.len()
            ));
        }
        (backend, _) => {
            // A remote backend's outputs need its credentials, which we never hold:
            // only the reference is recorded.
            r.facts.push(InfraFact {
                key: FactKey::TerraformState.text(),
                source: FactSource::Terraform,
                value: reference,
                fetched_at: now,
                ttl_seconds: fresh.terraform_seconds,
                checksum: None,
            });
            r.summary.push(format!(
                "Terraform: backend `{backend}` recorded (outputs are read from local states only)"
            ));
        }
    }
    Ok(())
}

/// Azure: the resource group's VMs (power state, addresses) and how they were asked.
fn gather_azure(
    azure: &crate::config::AzureTarget,
    fresh: Freshness,
    now: Timestamp,
    r: &mut Refresh,
) -> Result<()> {
    r.replaced_prefixes.push(keys::VM_PREFIX.into());
    r.replaced_prefixes.push(keys::AZURE_PREFIX.into());
    let AzureVms {
        vms,
        requests,
        via,
        fallback_reason,
        notes,
    } = azure_vms(azure)?;
    let count = vms.len();
    for vm in vms {
        r.facts.push(InfraFact {
            key: FactKey::Vm(vm.name).text(),
            source: FactSource::Azure,
            value: keys::to_value(&VmFact {
                power_state: Some(vm.power_state),
                provisioning_state: vm.provisioning_state,
                private_ips: vm.private_ips,
                public_ips: vm.public_ips,
                fqdns: vm.fqdns,
            }),
            fetched_at: now,
            ttl_seconds: fresh.vm_seconds,
            checksum: None,
        });
    }
    let how = match &fallback_reason {
        None => format!("{requests} ARM request(s), Resource Graph"),
        Some(why) => format!("{requests} ARM requests, the resource group's lists: {why}"),
    };
    r.summary.push(format!(
        "Azure: {count} VM(s) in resource group {} ({how})",
        azure.resource_group
    ));
    r.summary
        .extend(notes.iter().map(|n| format!("Azure: {n}")));
    r.facts.push(InfraFact {
        key: FactKey::AzureRefresh.text(),
        source: FactSource::Azure,
        value: keys::to_value(&AzureRefresh {
            subscription_id: azure.subscription_id.clone(),
            resource_group: azure.resource_group.clone(),
            vms: count,
            arm_requests: requests,
            run_id: None,
            arm_requests_in_run: None,
            via: Some(via.to_string()),
            fallback_reason,
            notes,
        }),
        fetched_at: now,
        ttl_seconds: fresh.vm_seconds,
        checksum: None,
    });
    r.arm_requests = requests;
    Ok(())
}

/// The inventory's hosts: whether each answers on its SSH port.
fn gather_hosts(
    config: &InstallerConfig,
    fresh: Freshness,
    probe_timeout: Duration,
    now: Timestamp,
    r: &mut Refresh,
) {
    r.replaced_prefixes.push(keys::HOST_PREFIX.into());
    let mut up = 0;
    for h in &config.hosts {
        let result = probe(h.address.trim(), h.ssh_port(), probe_timeout);
        up += usize::from(result.is_ok());
        r.facts.push(InfraFact {
            key: FactKey::Host(h.name.clone()).text(),
            source: FactSource::Inventory,
            value: keys::to_value(&HostFact {
                address: h.address.trim().to_string(),
                port: h.ssh_port(),
                reachable: result.is_ok(),
                error: result.err(),
            }),
            fetched_at: now,
            ttl_seconds: fresh.probe_seconds,
            checksum: None,
        });
    }
    r.summary.push(format!(
        "Inventory: {up} of {} host(s) answer on their SSH port",
        config.hosts.len()
    ));
}

/// What one refresh of the resource group's VMs learned, and how.
struct AzureVms {
    vms: Vec<AzureVm>,
    /// ARM requests made.
    requests: u32,
    /// `resource_graph` or `lists`.
    via: &'static str,
    fallback_reason: Option<String>,
    notes: Vec<String>,
}

/// The longest one ARM request may take, its retries included.
#[cfg(feature = "azure")]
const ARM_REQUEST_TOTAL: std::time::Duration = std::time::Duration::from_secs(90);

#[cfg(feature = "azure")]
use thinkube_azure::VmState as AzureVm;

#[cfg(feature = "azure")]
fn azure_vms(azure: &crate::config::AzureTarget) -> Result<AzureVms> {
    let policy = crate::retry::RetryPolicy::arm();
    let retry = thinkube_azure::Retry {
        attempts: policy.attempts,
        delay: policy.delay,
        backoff: policy.backoff,
        total: ARM_REQUEST_TOTAL,
    };
    let settings = thinkube_azure::Settings {
        credential: azure.credential.clone(),
        tenant_id: azure.tenant_id.clone(),
        client_id: azure.client_id.clone(),
        subscription: Some(azure.subscription_id.clone()),
        cloud: azure.cloud.clone(),
        endpoint: azure.endpoint.clone(),
        authority_host: azure.authority_host.clone(),
    };
    let snap = thinkube_azure::refresh_blocking(
        &settings,
        retry,
        &azure.subscription_id,
        &azure.resource_group,
    )
    .map_err(|e| {
        use thinkube_azure::ArmError as A;
        let message = format!("the Azure VM facts could not be refreshed: {e}");
        match e {
            // What the user set up (credentials, subscription, group, rights) is wrong.
            A::Unauthenticated { .. }
            | A::Forbidden { .. }
            | A::ResourceGroupNotFound { .. }
            | A::SubscriptionNotFound { .. }
            | A::Token(_)
            | A::Configuration(_) => EngineError::Usage(message),
            // Azure or the way to it failed.
            _ => EngineError::Unavailable(message),
        }
    })?;
    let (via, fallback_reason) = match snap.source {
        thinkube_azure::Source::ResourceGraph => ("resource_graph", None),
        thinkube_azure::Source::Lists { reason } => ("lists", Some(reason)),
    };
    Ok(AzureVms {
        vms: snap.vms,
        requests: snap.requests,
        via,
        fallback_reason,
        notes: snap.notes,
    })
}

#[cfg(not(feature = "azure"))]
fn azure_vms(_: &crate::config::AzureTarget) -> Result<AzureVms> {
    Err(EngineError::Usage(
        "this thinkube-deploy was built without Azure support (--no-default-features): build it with `cargo build --release -p thinkube-engine`, or use thinkube-installer (which includes it)".into(),
    ))
}

/// Without the `azure` feature no VM is ever fetched; the type keeps `gather` whole.
#[cfg(not(feature = "azure"))]
struct AzureVm {
    name: String,
    power_state: String,
    provisioning_state: Option<String>,
    private_ips: Vec<String>,
    public_ips: Vec<String>,
    fqdns: Vec<String>,
}

/// `facts --refresh`: asks every source the saved configuration names, once, and
/// commits what they said (for servers over SSH, their hardware too, logging in with
/// `password` when they use one). Returns one line per source.
pub fn refresh_configured(
    store: &Store,
    wait: LockWait,
    now: Timestamp,
    password: Option<&str>,
) -> Result<Vec<String>> {
    let config = crate::config::load(store.layout())?.ok_or_else(|| {
        EngineError::Usage(format!(
            "there is no configuration in {}: save one from the app's wizard (it names the hosts and the Terraform state to ask)",
            store.layout().root.display()
        ))
    })?;
    let mut refresh = gather(&config, now, PROBE_TIMEOUT)?;
    let hosts = host_keys::config_hosts(&config);
    if !hosts.is_empty() {
        let hw = hardware::gather(
            &store.layout().home,
            &hosts,
            host_keys::Logins {
                password,
                ..host_keys::Logins::default()
            },
            now,
        );
        refresh.facts.extend(hw.facts);
        refresh.replaced_prefixes.extend(hw.replaced_prefixes);
        refresh.summary.extend(hw.summary);
    }
    let summary = refresh.summary.clone();
    commit(store, refresh, wait, now)?;
    Ok(summary)
}

/// Every cached infrastructure fact with its age, and the runtime facts. Local files
/// only: never the network.
pub fn cached(store: &Store, now: Timestamp) -> Result<(Vec<FactView>, Vec<RuntimeFact>)> {
    Ok(match store.load(now)? {
        None => (Vec::new(), Vec::new()),
        Some(l) => (
            view(&l.state, now, &current_checksums(&l.state)),
            l.state.facts.runtime,
        ),
    })
}

/// Commits what a refresh learned: the facts of each source asked replace its old
/// ones; one `facts_updated` event. Returns the new serial.
pub fn commit(store: &Store, refresh: Refresh, wait: LockWait, now: Timestamp) -> Result<u64> {
    let mut w = store.open_writer("facts", wait, now)?;
    let event = NewEvent::new(EventKind::FactsUpdated, refresh.message());
    let serial = w.commit(now, vec![event], |s| {
        apply(s, refresh);
        Ok(())
    })?;
    w.finish()?;
    Ok(serial)
}

impl Refresh {
    /// The `facts_updated` event's message.
    pub fn message(&self) -> String {
        if self.summary.is_empty() {
            "facts refreshed: no source is configured".to_string()
        } else {
            format!("facts refreshed: {}", self.summary.join("; "))
        }
    }
}

/// The facts of each source asked replace its old ones.
pub(crate) fn apply(state: &mut StateFile, refresh: Refresh) {
    state.facts.infrastructure.retain(|f| {
        !refresh
            .replaced_prefixes
            .iter()
            .any(|p| f.key.starts_with(p.as_str()))
    });
    state.facts.infrastructure.extend(refresh.facts);
}

/// Records what a gate saw about a host: when it was checked, and when last true.
pub(crate) fn observe(
    state: &mut StateFile,
    host: &str,
    kind: &str,
    seen_true: bool,
    now: Timestamp,
) {
    let facts = &mut state.facts.runtime;
    let fact = match facts.iter_mut().find(|f| f.host == host && f.kind == kind) {
        Some(f) => f,
        None => {
            facts.push(RuntimeFact {
                host: host.to_string(),
                kind: kind.to_string(),
                checked_at: now,
                last_seen_true: None,
            });
            facts.last_mut().expect("just pushed")
        }
    };
    fact.checked_at = now;
    if seen_true {
        fact.last_seen_true = Some(now);
    }
}

/// Whether the VM facts these names need are missing or older than their time-to-live.
pub(crate) fn vms_stale(state: &StateFile, vms: &[String], now: Timestamp) -> bool {
    vms.iter().any(|vm| {
        keys::find(&state.facts.infrastructure, &FactKey::Vm(vm.clone())).is_none_or(|f| {
            f.fetched_at.seconds_until(now) > i64::try_from(f.ttl_seconds).unwrap_or(i64::MAX)
        })
    })
}

/// Asks Azure only (for a `vm_running` gate whose facts are stale).
pub(crate) fn gather_vms(config: &InstallerConfig, now: Timestamp) -> Result<Refresh> {
    let azure_only = InstallerConfig {
        terraform: None,
        hosts: Vec::new(),
        ..config.clone()
    };
    gather(&azure_only, now, PROBE_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Host;
    use std::net::TcpListener;

    fn tfstate(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("terraform.tfstate");
        std::fs::write(&p, body).unwrap();
        p
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("thinkube-facts-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_terraform_state_gives_its_outputs_and_hides_sensitive_ones() {
        let dir = temp("tf");
        let p = tfstate(
            &dir,
            r#"{"version":4,"terraform_version":"1.9.5","serial":12,"lineage":"abc",
               "outputs":{"controller_ip":{"value":"10.0.0.4","type":"string"},
                          "admin_password":{"value":"hunter2","type":"string","sensitive":true},
                          "client_secret":{"value":"s3","type":"string"}}}"#,
        );
        let st = read_tfstate(&p).unwrap();
        assert_eq!(st.terraform_version.as_deref(), Some("1.9.5"));
        assert_eq!(st.outputs["controller_ip"], "10.0.0.4");
        assert_eq!(st.outputs["admin_password"], "(sensitive)");
        assert_eq!(st.outputs["client_secret"], "(sensitive)");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn other_formats_are_refused_with_what_to_check() {
        let dir = temp("tf-bad");
        for (body, says) in [
            (r#"{"version":3}"#, "format version 3, not 4"),
            ("not json", "is not JSON"),
        ] {
            let e = read_tfstate(&tfstate(&dir, body)).unwrap_err().to_string();
            assert!(
                e.contains(says) && e.contains("terraform.state_path"),
                "{e}"
            );
        }
        let e = read_tfstate(&dir.join("missing")).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_fact_is_stale_when_old_or_when_its_file_changed() {
        let now = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
        let mut state = StateFile::new(uuid::Uuid::nil(), now);
        let fact = |key: &str, age: i64, sum: &str| InfraFact {
            key: key.into(),
            source: FactSource::Terraform,
            value: serde_json::json!({"source_file": "/x/terraform.tfstate"}),
            fetched_at: now.plus_seconds(-age),
            ttl_seconds: 3600,
            checksum: Some(sum.into()),
        };
        state.facts.infrastructure = vec![fact("a", 10, "s1"), fact("b", 7200, "s1")];
        let same = BTreeMap::from([("/x/terraform.tfstate".to_string(), Some("s1".to_string()))]);
        let v = view(&state, now, &same);
        assert_eq!((v[0].stale, v[0].age_seconds), (false, 10));
        assert!(v[1].stale_reason.as_deref().unwrap().contains("7200 s ago"));
        let changed =
            BTreeMap::from([("/x/terraform.tfstate".to_string(), Some("s2".to_string()))]);
        let v = view(&state, now, &changed);
        assert_eq!(
            v[0].stale_reason.as_deref(),
            Some("/x/terraform.tfstate changed since it was read")
        );
        let gone = BTreeMap::from([("/x/terraform.tfstate".to_string(), None)]);
        assert!(
            view(&state, now, &gone)[0]
                .stale_reason
                .as_deref()
                .unwrap()
                .contains("is gone")
        );
    }

    #[test]
    fn hosts_are_probed_on_their_ssh_port() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(probe("127.0.0.1", port, PROBE_TIMEOUT).is_ok());
        drop(listener);
        assert!(probe("127.0.0.1", port, PROBE_TIMEOUT).is_err());
        let config = InstallerConfig {
            target: TargetKind::Ssh,
            hosts: vec![Host {
                name: "gone".into(),
                address: "127.0.0.1".into(),
                port: Some(port),
                ..Default::default()
            }],
            plan: "thinkube".into(),
            ..Default::default()
        };
        let now = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
        let r = gather(&config, now, Duration::from_millis(500)).unwrap();
        assert_eq!(r.facts.len(), 1);
        assert_eq!(r.facts[0].key, "host/gone");
        assert_eq!(r.facts[0].source, FactSource::Inventory);
        assert_eq!(r.facts[0].ttl_seconds, 300);
    }
}
