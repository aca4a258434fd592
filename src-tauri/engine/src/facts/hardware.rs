//! Hardware detection over SSH: each host's CPU cores, memory, root disk, OS release,
//! architecture and NVIDIA GPUs, read with one short POSIX shell script over the same
//! strict SSH connection the pre-flight uses (the installer's `known_hosts`, the
//! host's user and key, a password only from memory). Kept as `hardware/NAME` facts
//! with their age; the wizard shows them as a capacity summary and proposes a plan's
//! GPU flag from them, never setting it by itself.

use std::path::Path;

use crate::facts::Refresh;
use crate::facts::host_keys::{self, Logins, SshHost, Trust};
use crate::state::fact_keys::{self as keys, FactKey, HardwareFact};
use crate::state::model::{FactSource, InfraFact};
use crate::timestamp::Timestamp;

/// How long a host's hardware is trusted: it changes when someone opens the case.
pub const HARDWARE_SECONDS: u64 = 24 * 60 * 60;

/// Prints `key=value` lines; every probe is optional (a minimal host lacks `lspci`).
const SCRIPT: &str = r#"echo "cores=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null)"
awk '/^MemTotal:/ {print "memory_kib=" $2}' /proc/meminfo 2>/dev/null
df -Pk / 2>/dev/null | awk 'NR==2 {print "disk_total_kib=" $2; print "disk_free_kib=" $4}'
( . /etc/os-release 2>/dev/null && echo "os=$PRETTY_NAME" )
echo "arch=$(uname -m)"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | sed 's/^/gpu=/'
elif command -v lspci >/dev/null 2>&1; then
  lspci 2>/dev/null | grep -i nvidia | grep -Ei 'vga|3d|display' | sed 's/^[^:]*: /gpu=/'
fi"#;

/// Reads what the script printed. Unknown or malformed lines are left out.
pub fn parse(text: &str) -> HardwareFact {
    let mut hw = HardwareFact::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let kib = || value.parse::<u64>().ok();
        match key {
            "cores" => hw.cpu_cores = value.parse().ok().filter(|n| *n > 0),
            "memory_kib" => hw.memory_mib = kib().map(|k| k / 1024),
            "disk_total_kib" => hw.disk_total_gib = kib().map(|k| k / (1024 * 1024)),
            "disk_free_kib" => hw.disk_free_gib = kib().map(|k| k / (1024 * 1024)),
            "os" if !value.is_empty() => hw.os = Some(value.trim_matches('"').to_string()),
            "arch" if !value.is_empty() => hw.arch = Some(value.to_string()),
            "gpu" if !value.is_empty() => hw.gpus.push(value.to_string()),
            _ => {}
        }
    }
    hw
}

/// One host's hardware, or why it could not be read (it does not answer, its key
/// is not trusted, the login failed).
pub fn detect(home: &Path, host: &SshHost, logins: Logins<'_>) -> HardwareFact {
    let view = host_keys::check(home, std::slice::from_ref(host));
    let failed = |e: String| HardwareFact {
        error: Some(e),
        ..HardwareFact::default()
    };
    match view.first().map(|v| (v.trust, v.problem.clone())) {
        Some((Trust::Trusted, _)) => {}
        Some((Trust::Unreachable, problem)) => {
            return failed(problem.unwrap_or_else(|| "it does not answer".into()));
        }
        None => return failed("it does not answer".into()),
        Some((Trust::Unknown, _)) => {
            return failed("its host key is not trusted yet: trust it first".into());
        }
        Some((Trust::Changed, _)) => {
            return failed("its host key changed: this may be an attack".into());
        }
    }
    match host_keys::remote(home, host, logins, SCRIPT, None) {
        Ok(out) => parse(&out),
        Err(e) => failed(format!("the login failed: {e}")),
    }
}

/// The hardware of every host, as facts that replace the earlier ones.
pub fn gather(home: &Path, hosts: &[SshHost], logins: Logins<'_>, now: Timestamp) -> Refresh {
    let mut r = Refresh {
        replaced_prefixes: vec![keys::HARDWARE_PREFIX.into()],
        ..Refresh::default()
    };
    let mut read = 0;
    for host in hosts {
        let hw = detect(home, host, logins);
        read += usize::from(hw.error.is_none());
        r.facts.push(InfraFact {
            key: FactKey::Hardware(host.name.clone()).text(),
            source: FactSource::Inventory,
            value: keys::to_value(&hw),
            fetched_at: now,
            ttl_seconds: HARDWARE_SECONDS,
            checksum: None,
        });
    }
    r.summary.push(format!(
        "Hardware: read from {read} of {} host(s)",
        hosts.len()
    ));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_script_prints_on_a_gpu_server_and_on_a_minimal_one_is_read() {
        let gpu = parse(
            "cores=20\nmemory_kib=131072000\ndisk_total_kib=1951000000\ndisk_free_kib=975500000\nos=Ubuntu 24.04.2 LTS\narch=aarch64\ngpu=NVIDIA GB10\n",
        );
        assert_eq!(gpu.cpu_cores, Some(20));
        assert_eq!(gpu.memory_mib, Some(128_000));
        assert_eq!(gpu.disk_total_gib, Some(1860));
        assert_eq!(gpu.disk_free_gib, Some(930));
        assert_eq!(gpu.os.as_deref(), Some("Ubuntu 24.04.2 LTS"));
        assert_eq!(gpu.arch.as_deref(), Some("aarch64"));
        assert_eq!(gpu.gpus, ["NVIDIA GB10"]);
        // lspci's form, and a host that said little.
        let small = parse(
            "cores=\narch=x86_64\ngpu=NVIDIA Corporation GA102 [GeForce RTX 3090] (rev a1)\nnonsense\n",
        );
        assert_eq!(small.cpu_cores, None);
        assert_eq!(small.memory_mib, None);
        assert_eq!(small.gpus.len(), 1);
        assert_eq!(small.error, None);
    }
}
