//! The inventory a deployment runs against: which one (given, the deployment's own,
//! the wizard's, or this machine), the digest that tells it changed, and a copy of
//! its content, secrets masked, that says *what* changed.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::facts::host_keys::{self, SshHost};
use crate::paths::Layout;
use crate::state::fsops::FileOps;
use crate::state::model::{DeploymentRecord, InputFile};

/// `-i` for ansible-playbook, and the inventory as the deployment records it:
/// `given` (`--inventory`, made absolute); else the one this deployment started
/// with, which must not have changed since; else the wizard's; else `localhost,`.
/// (The window passes the wizard's inventory explicitly: its user changes it there
/// on purpose.)
pub(crate) fn choose(
    given: Option<&Path>,
    layout: &Layout,
    current: Option<&DeploymentRecord>,
) -> Result<(String, Option<InputFile>)> {
    let recorded = current.and_then(|d| d.configuration.inventory.as_ref());
    let path = match (given, recorded) {
        (Some(p), _) if !p.exists() => {
            return Err(EngineError::Usage(format!(
                "the inventory {} does not exist",
                p.display()
            )));
        }
        (Some(p), _) => Some(std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())),
        (None, Some(r)) if !Path::new(&r.path).exists() => {
            return Err(EngineError::Usage(format!(
                "the inventory {} this deployment runs against is gone; put it back, or give the one to use now with --inventory PATH",
                r.path
            )));
        }
        (None, Some(r)) => Some(PathBuf::from(&r.path)),
        (None, None) if layout.inventory_file().exists() => Some(layout.inventory_file()),
        (None, None) => None,
    };
    let Some(path) = path else {
        return Ok(("localhost,".to_string(), None));
    };
    let sha256 = crate::config::check_inventory(&path)?;
    if let Some(r) = recorded
        && given.is_none()
        && r.sha256 != sha256
    {
        let changes = what_changed(layout, &path)
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        return Err(EngineError::Usage(format!(
            "the inventory {} changed since this deployment started ({} then, {} now){changes}. Run it against the inventory as it is now with `--inventory {}`, or put the earlier one back. Nothing ran",
            r.path,
            short_digest(&r.sha256),
            short_digest(&sha256),
            r.path
        )));
    }
    let record = InputFile {
        path: path.display().to_string(),
        sha256,
    };
    Ok((record.path.clone(), Some(record)))
}

/// The first 12 hex digits of a `sha256:` digest, for a message.
pub(crate) fn short_digest(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// Keeps what `inventory` holds now as the deployment's copy (written when a run
/// begins, so a refused request writes nothing).
pub(crate) fn keep_copy(fs: &dyn FileOps, layout: &Layout, inventory: &Path) -> Result<()> {
    let mut value = host_keys::read_inventory(inventory)?;
    mask_secrets(&mut value);
    let mut bytes = serde_json::to_vec_pretty(&value)
        .map_err(|e| EngineError::Internal(format!("cannot encode the inventory: {e}")))?;
    bytes.push(b'\n');
    let to = layout.deployment_inventory_file();
    fs.replace(&to, &bytes)
        .map_err(|e| EngineError::io("keep a copy of the inventory in", &to, e))
}

/// Replaces the value of every secret-named key, at any depth, with the mask.
fn mask_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if crate::secrets::is_secret_key(k) {
                    *v = Value::String(crate::secrets::MASK.into());
                } else {
                    mask_secrets(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        _ => {}
    }
}

/// What differs between the deployment's copy and `inventory` now, host by host;
/// `None` when there is no copy to compare with (a deployment from before copies
/// were kept) or it cannot be read.
fn what_changed(layout: &Layout, inventory: &Path) -> Option<String> {
    let copy = host_keys::read_inventory(&layout.deployment_inventory_file()).ok()?;
    if copy.as_object().is_none_or(|m| m.is_empty()) {
        return None;
    }
    let now = host_keys::read_inventory(inventory).ok()?;
    let hosts = |v: &Value| -> Vec<SshHost> {
        host_keys::every_host(v)
            .into_iter()
            .map(|(h, _)| h)
            .collect()
    };
    Some(describe_changes(&hosts(&copy), &hosts(&now)))
}

/// Hosts removed, added, moved (address or port) or logging in otherwise; when the
/// hosts are all the same, that something else changed.
fn describe_changes(then: &[SshHost], now: &[SshHost]) -> String {
    let find = |hosts: &'_ [SshHost], name: &str| hosts.iter().find(|h| h.name == name).cloned();
    let mut changes = Vec::new();
    let names = |hosts: &[SshHost], other: &[SshHost]| {
        hosts
            .iter()
            .filter(|h| find(other, &h.name).is_none())
            .map(|h| h.describe())
            .collect::<Vec<_>>()
    };
    let removed = names(then, now);
    if !removed.is_empty() {
        changes.push(format!("{} no longer in it", removed.join(", ")));
    }
    let added = names(now, then);
    if !added.is_empty() {
        changes.push(format!("{} added", added.join(", ")));
    }
    let login = |h: &SshHost| {
        let user = h.user.as_deref().unwrap_or("the local user");
        match (&h.key_file, h.password) {
            (_, true) => format!("{user} with a password"),
            (Some(k), false) => format!("{user} with the key {k}"),
            (None, false) => user.to_string(),
        }
    };
    for old in then {
        let Some(new) = find(now, &old.name) else {
            continue;
        };
        if (&old.address, old.port) != (&new.address, new.port) {
            changes.push(format!(
                "{} moved from {}:{} to {}:{}",
                old.name, old.address, old.port, new.address, new.port
            ));
        }
        if login(old) != login(&new) {
            changes.push(format!(
                "{} logs in as {} now (was {})",
                old.name,
                login(&new),
                login(old)
            ));
        }
    }
    if changes.is_empty() {
        "its hosts are the same and log in as before; variables or groups changed".into()
    } else {
        changes.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, address: &str, port: u16, user: Option<&str>) -> SshHost {
        SshHost {
            name: name.into(),
            address: address.into(),
            port,
            user: user.map(str::to_string),
            key_file: None,
            password: false,
        }
    }

    #[test]
    fn changes_are_named_host_by_host() {
        let then = [
            host("a", "10.0.0.1", 22, Some("ubuntu")),
            host("b", "10.0.0.2", 22, None),
            host("c", "10.0.0.3", 22, None),
        ];
        let mut b = host("b", "10.0.0.2", 2222, None);
        b.password = true;
        let now = [then[0].clone(), b, host("d", "10.0.0.4", 22, None)];
        assert_eq!(
            describe_changes(&then, &now),
            "c (10.0.0.3:22) no longer in it; d (10.0.0.4:22) added; b moved from 10.0.0.2:22 to 10.0.0.2:2222; b logs in as the local user with a password now (was the local user)"
        );
        assert_eq!(
            describe_changes(&then, &then),
            "its hosts are the same and log in as before; variables or groups changed"
        );
    }

    #[test]
    fn secret_named_values_are_masked_at_any_depth() {
        let mut v = serde_json::json!({"all": {"vars": {"ansible_become_pass": "s3cret", "x": 1},
            "hosts": {"h": {"db_password": "hunter22", "ansible_host": "10.0.0.1"}}}});
        mask_secrets(&mut v);
        let text = v.to_string();
        assert!(
            !text.contains("s3cret") && !text.contains("hunter22"),
            "{text}"
        );
        assert!(text.contains("10.0.0.1") && text.contains(crate::secrets::MASK));
    }
}
