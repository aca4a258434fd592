//! The infrastructure facts' keys and the shapes of their values, in one place. The
//! state file stores a fact as a key string and a JSON value (`state::model::InfraFact`);
//! everything that writes or reads one goes through these types, never through a
//! string or a field name of its own.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::state::model::InfraFact;

/// Which fact. Its stored form is the key text: `vm/NAME`, `host/NAME`,
/// `azure/refresh`, `terraform/state`, `terraform/output/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactKey {
    /// An Azure VM ([`VmFact`]).
    Vm(String),
    /// An inventory host's SSH port, probed ([`HostFact`]).
    Host(String),
    /// An inventory host's hardware, read over SSH ([`HardwareFact`]).
    Hardware(String),
    /// The last Azure refresh ([`AzureRefresh`]).
    AzureRefresh,
    /// The Terraform state: where it is, its checksum.
    TerraformState,
    /// One Terraform output (`{ value, source_file }`).
    TerraformOutput(String),
    /// A key this program does not know: kept as it is.
    Other(String),
}

/// The sources whose refresh replaces every fact under a prefix.
pub const VM_PREFIX: &str = "vm/";
pub const HOST_PREFIX: &str = "host/";
pub const HARDWARE_PREFIX: &str = "hardware/";
pub const AZURE_PREFIX: &str = "azure/";
pub const TERRAFORM_PREFIX: &str = "terraform/";

impl FactKey {
    pub fn parse(key: &str) -> FactKey {
        if let Some(name) = key.strip_prefix(VM_PREFIX) {
            FactKey::Vm(name.to_string())
        } else if let Some(name) = key.strip_prefix(HOST_PREFIX) {
            FactKey::Host(name.to_string())
        } else if let Some(name) = key.strip_prefix(HARDWARE_PREFIX) {
            FactKey::Hardware(name.to_string())
        } else if key == "azure/refresh" {
            FactKey::AzureRefresh
        } else if key == "terraform/state" {
            FactKey::TerraformState
        } else if let Some(name) = key.strip_prefix("terraform/output/") {
            FactKey::TerraformOutput(name.to_string())
        } else {
            FactKey::Other(key.to_string())
        }
    }

    /// The stored key text.
    pub fn text(&self) -> String {
        match self {
            FactKey::Vm(name) => format!("{VM_PREFIX}{name}"),
            FactKey::Host(name) => format!("{HOST_PREFIX}{name}"),
            FactKey::Hardware(name) => format!("{HARDWARE_PREFIX}{name}"),
            FactKey::AzureRefresh => "azure/refresh".to_string(),
            FactKey::TerraformState => "terraform/state".to_string(),
            FactKey::TerraformOutput(name) => format!("terraform/output/{name}"),
            FactKey::Other(key) => key.clone(),
        }
    }
}

/// What a `vm/NAME` fact says of one VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmFact {
    /// `running`, `deallocated`, `stopped`, ... or `unknown` when Azure did not say;
    /// absent when the source knows only how the VM was provisioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_state: Option<String>,
    /// ARM's `provisioningState` in lower case (`succeeded`, `creating`, ...), from a
    /// refresh and from an imported state alike.
    #[serde(default)]
    pub provisioning_state: Option<String>,
    #[serde(default)]
    pub private_ips: Vec<String>,
    #[serde(default)]
    pub public_ips: Vec<String>,
    /// The public IPs' DNS names.
    #[serde(default)]
    pub fqdns: Vec<String>,
}

impl VmFact {
    pub const RUNNING: &'static str = "running";

    pub fn is_running(&self) -> bool {
        self.power_state.as_deref() == Some(Self::RUNNING)
    }
}

/// What a `host/NAME` fact says: whether the host's SSH port answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFact {
    pub address: String,
    pub port: u16,
    pub reachable: bool,
    pub error: Option<String>,
}

/// What a `hardware/NAME` fact says: what the host has, read over SSH (each part
/// `None` when the host did not say), or why it could not be read.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardwareFact {
    pub cpu_cores: Option<u32>,
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub memory_mib: Option<u64>,
    /// The root file system's size and free space.
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub disk_total_gib: Option<u64>,
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub disk_free_gib: Option<u64>,
    /// `PRETTY_NAME` of `/etc/os-release`.
    pub os: Option<String>,
    /// `uname -m`.
    pub arch: Option<String>,
    /// NVIDIA GPUs, by name (`nvidia-smi`, else `lspci`).
    #[serde(default)]
    pub gpus: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub error: Option<String>,
}

/// What the `azure/refresh` fact says of the last refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzureRefresh {
    pub subscription_id: String,
    pub resource_group: String,
    pub vms: usize,
    /// ARM requests this refresh made.
    pub arm_requests: u32,
    /// Set when a run's gates made the refresh: that run, and its requests so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arm_requests_in_run: Option<u32>,
    /// `resource_graph`, or `lists` when Resource Graph could not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Why the lists were used instead of Resource Graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// What the refresh could not read (a NIC of a resource group without rights).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The fact stored under `key`.
pub fn find<'a>(facts: &'a [InfraFact], key: &FactKey) -> Option<&'a InfraFact> {
    let text = key.text();
    facts.iter().find(|f| f.key == text)
}

/// A fact's value read as `T`; `None` when it has another shape.
pub fn value<T: DeserializeOwned>(value: &serde_json::Value) -> Option<T> {
    T::deserialize(value).ok()
}

/// A value as stored in a fact.
pub fn to_value<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// What the facts say of VM `name`, if anything.
pub fn vm(facts: &[InfraFact], name: &str) -> Option<VmFact> {
    find(facts, &FactKey::Vm(name.to_string())).and_then(|f| value(&f.value))
}

/// Every VM the facts know, with what they say.
pub fn vms(facts: &[InfraFact]) -> impl Iterator<Item = (String, VmFact)> + '_ {
    facts.iter().filter_map(|f| match FactKey::parse(&f.key) {
        FactKey::Vm(name) => Some((name, value(&f.value)?)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_as_they_are_written() {
        for key in [
            FactKey::Vm("k0s-1".into()),
            FactKey::Host("ctl".into()),
            FactKey::Hardware("ctl".into()),
            FactKey::AzureRefresh,
            FactKey::TerraformState,
            FactKey::TerraformOutput("vpn_ip".into()),
            FactKey::Other("later/kind".into()),
        ] {
            assert_eq!(FactKey::parse(&key.text()), key);
        }
        assert_eq!(FactKey::parse("vm/a").text(), "vm/a");
    }

    #[test]
    fn a_vm_fact_without_a_power_state_is_not_running() {
        let imported: VmFact =
            serde_json::from_value(serde_json::json!({"provisioning_state": "Succeeded"})).unwrap();
        assert!(!imported.is_running());
        assert_eq!(imported.power_state, None);
        let running = VmFact {
            power_state: Some("running".into()),
            ..VmFact::default()
        };
        assert!(running.is_running());
        // What a refresh wrote before FQDNs were kept reads as it was, with none.
        let stored = serde_json::json!({
            "power_state": "deallocated", "provisioning_state": null,
            "private_ips": ["10.0.0.4"], "public_ips": []
        });
        let fact: VmFact = serde_json::from_value(stored.clone()).unwrap();
        let mut now = stored;
        now["fqdns"] = serde_json::json!([]);
        assert_eq!(to_value(&fact), now);
    }
}
