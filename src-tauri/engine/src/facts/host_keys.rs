//! SSH host keys, trusted explicitly. The installer keeps its own `known_hosts`
//! (`<home>/known_hosts`, 0600) and every SSH connection Ansible makes for it checks
//! against that file strictly (`StrictHostKeyChecking=yes`): host key checking is
//! never turned off. A key is trusted only by `thinkube-deploy hosts trust`, after
//! its fingerprint was shown.
//!
//! The keys a host offers are read with `ssh-keyscan`, their fingerprints made by
//! `ssh-keygen -l` (so they read exactly as OpenSSH prints them), and `known_hosts`
//! lines are written in OpenSSH's own format (`[address]:port type key` for a port
//! other than 22).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use crate::error::{EngineError, Result};

/// How long a host gets to answer on its SSH port and to offer its keys.
const SCAN_SECONDS: u64 = 5;

/// A host of the inventory reached over SSH.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshHost {
    pub name: String,
    pub address: String,
    pub port: u16,
    /// `ansible_user` (host, else group variables); `None`: the local user.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub user: Option<String>,
    /// `ansible_ssh_private_key_file`, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub key_file: Option<String>,
    /// The inventory sets a password for it (the value is never read here).
    pub password: bool,
}

impl SshHost {
    /// The host for a person: `name (address:port)`.
    pub fn describe(&self) -> String {
        format!("{} ({}:{})", self.name, self.address, self.port)
    }

    /// The host as `known_hosts` names it.
    fn known_as(&self) -> String {
        match self.port {
            22 => self.address.clone(),
            p => format!("[{}]:{p}", self.address),
        }
    }
}

/// Whether a host's key is trusted.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    /// Its key is in the installer's `known_hosts`.
    Trusted,
    /// No key of it is recorded.
    Unknown,
    /// A key is recorded for it, and the host now offers another.
    Changed,
    /// It did not answer, so its key could not be read.
    Unreachable,
}

/// What `hosts` shows of one host.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, Serialize)]
pub struct HostKeyView {
    #[serde(flatten)]
    pub host: SshHost,
    pub reachable: bool,
    /// The SHA256 fingerprint of the key it offers (`SHA256:...`), as `ssh-keygen -l`.
    pub fingerprint: Option<String>,
    pub key_type: Option<String>,
    pub trust: Trust,
    /// For a changed key: the fingerprint of the key that was trusted.
    pub trusted_fingerprint: Option<String>,
    /// The `known_hosts` line that would trust it (never a secret).
    #[serde(skip)]
    line: Option<String>,
    /// Why it could not be checked (it did not answer, offered no key).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub problem: Option<String>,
}

impl HostKeyView {
    /// The host and the key it offers: `name (address:port) type SHA256:...`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} {}",
            self.host.describe(),
            self.key_type.as_deref().unwrap_or("?"),
            self.fingerprint.as_deref().unwrap_or("?")
        )
    }
}

/// The installer's own `known_hosts`.
pub fn known_hosts_file(home: &Path) -> PathBuf {
    home.join("known_hosts")
}

/// The SSH options every Ansible connection of the installer uses.
pub fn ssh_common_args(home: &Path) -> String {
    format!(
        "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
        known_hosts_file(home).display()
    )
}

/// The hosts of an inventory that Ansible reaches over SSH: every host of any group
/// (children too), at `ansible_host` (else its name) and `ansible_port` (else 22),
/// except those with `ansible_connection: local`. YAML inventories (what the wizard
/// and the earlier installer's frontend write) and INI ones (what its backend wrote:
/// `[group]`, `[group:vars]`, `[group:children]`) are read; host ranges
/// (`node[01:10]`) are not expanded.
pub fn ssh_hosts(inventory: &Path) -> Result<Vec<SshHost>> {
    Ok(hosts_of(&read_inventory(inventory)?))
}

/// An inventory, YAML or INI, in the shape of a YAML one (groups of `hosts`, `vars`
/// and `children`). A file that is neither reads as no groups.
pub(crate) fn read_inventory(inventory: &Path) -> Result<serde_json::Value> {
    let bytes = crate::state::fsops::read_regular(inventory, 4 << 20)
        .map_err(|e| EngineError::io("read the inventory", inventory, e))?
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    Ok(match crate::yaml::from_str::<serde_json::Value>(&text) {
        Ok(v) if v.is_object() => v,
        _ => ini_as_yaml(&text),
    })
}

/// The SSH hosts of an inventory read by [`read_inventory`] (see [`ssh_hosts`]).
pub(crate) fn hosts_of(value: &serde_json::Value) -> Vec<SshHost> {
    every_host(value)
        .into_iter()
        .filter_map(|(host, local)| (!local).then_some(host))
        .collect()
}

/// Every host of an inventory read by [`read_inventory`], and whether Ansible runs
/// it locally (`ansible_connection: local`) rather than over SSH.
pub(crate) fn every_host(value: &serde_json::Value) -> Vec<(SshHost, bool)> {
    // A host may be listed in several groups: its own variables win over its
    // groups', as in Ansible; then each host is read once.
    let mut found = Found::default();
    for group in value.as_object().into_iter().flatten().map(|(_, g)| g) {
        collect(group, &mut found, &serde_json::Map::new(), 1);
    }
    found
        .hosts
        .into_iter()
        .map(|(name, mut vars)| {
            for (k, v) in found.groups.remove(&name).unwrap_or_default() {
                vars.entry(k).or_insert(v);
            }
            (name, vars)
        })
        .map(|(name, v)| {
            let local = v.get("ansible_connection").and_then(|c| c.as_str()) == Some("local");
            let text = |k: &str| v.get(k).and_then(|a| a.as_str()).map(str::to_string);
            let port = v
                .get("ansible_port")
                .and_then(|p| p.as_u64().or_else(|| p.as_str()?.parse().ok()))
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(22);
            let host = SshHost {
                address: text("ansible_host").unwrap_or_else(|| name.clone()),
                name,
                port,
                user: text("ansible_user").or_else(|| text("ansible_ssh_user")),
                key_file: text("ansible_ssh_private_key_file")
                    .or_else(|| text("ansible_private_key_file")),
                password: v.contains_key("ansible_password") || v.contains_key("ansible_ssh_pass"),
            };
            (host, local)
        })
        .collect()
}

type Vars = serde_json::Map<String, serde_json::Value>;

/// An INI inventory in the shape of a YAML one, so one reader serves both.
fn ini_as_yaml(text: &str) -> serde_json::Value {
    #[derive(Default)]
    struct Group {
        hosts: Vars,
        vars: Vars,
        children: Vec<String>,
    }
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let (mut group, mut kind) = ("ungrouped".to_string(), "hosts");
    let pair = |t: &str| {
        let (k, v) = t.split_once('=')?;
        let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
        Some((
            k.trim().to_string(),
            serde_json::Value::String(v.to_string()),
        ))
    };
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let (g, suffix) = name.split_once(':').unwrap_or((name, "hosts"));
            (group, kind) = (
                g.to_string(),
                if suffix == "vars" {
                    "vars"
                } else if suffix == "children" {
                    "children"
                } else {
                    "hosts"
                },
            );
            groups.entry(group.clone()).or_default();
            continue;
        }
        let g = groups.entry(group.clone()).or_default();
        match kind {
            "vars" => g.vars.extend(pair(line)),
            "children" => g.children.push(line.to_string()),
            _ => {
                let mut tokens = line.split_whitespace();
                let Some(name) = tokens.next().filter(|n| !n.contains('[')) else {
                    continue;
                };
                let vars: Vars = tokens.filter_map(pair).collect();
                g.hosts
                    .insert(name.to_string(), serde_json::Value::Object(vars));
            }
        }
    }
    // `budget` bounds the groups visited: children may form a cycle, or fan out.
    fn shaped(
        name: &str,
        groups: &BTreeMap<String, Group>,
        depth: usize,
        budget: &mut usize,
    ) -> serde_json::Value {
        let Some(g) = groups.get(name).filter(|_| depth < 16 && *budget > 0) else {
            return serde_json::json!({});
        };
        *budget -= 1;
        let children: Vars = g
            .children
            .iter()
            .map(|c| (c.clone(), shaped(c, groups, depth + 1, budget)))
            .collect();
        serde_json::json!({"hosts": g.hosts, "vars": g.vars, "children": children})
    }
    // `all` gives its variables to every host: make every other group its child.
    let mut root = Vars::new();
    let mut all = groups.remove("all").unwrap_or_default();
    all.children.extend(groups.keys().cloned());
    groups.insert("all".into(), all);
    root.insert("all".into(), shaped("all", &groups, 0, &mut 10_000));
    serde_json::Value::Object(root)
}

/// Hosts' own variables, and the variables their groups give them.
#[derive(Default)]
struct Found {
    hosts: BTreeMap<String, Vars>,
    groups: BTreeMap<String, Vars>,
}

fn collect(group: &serde_json::Value, found: &mut Found, inherited: &Vars, depth: usize) {
    let Some(map) = group.as_object() else {
        return;
    };
    if depth > 32 {
        return;
    }
    // A group's own variables win over its parents'.
    let mut vars = inherited.clone();
    for (k, v) in map
        .get("vars")
        .and_then(|v| v.as_object())
        .into_iter()
        .flatten()
    {
        vars.insert(k.clone(), v.clone());
    }
    for (name, own) in map
        .get("hosts")
        .and_then(|h| h.as_object())
        .into_iter()
        .flatten()
    {
        let host = found.hosts.entry(name.clone()).or_default();
        for (k, v) in own.as_object().into_iter().flatten() {
            host.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let from_groups = found.groups.entry(name.clone()).or_default();
        for (k, v) in &vars {
            from_groups.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    for (_, child) in map
        .get("children")
        .and_then(|c| c.as_object())
        .into_iter()
        .flatten()
    {
        collect(child, found, &vars, depth + 1);
    }
}

/// The SSH hosts of the wizard's configuration, as the inventory it writes names
/// them (an SSH target's hosts with an address; none for this machine or Azure,
/// whose hosts come from the facts).
pub fn config_hosts(config: &crate::config::InstallerConfig) -> Vec<SshHost> {
    use crate::config::{SshAuth, TargetKind};
    if config.target != TargetKind::Ssh {
        return Vec::new();
    }
    let user = Some(config.ssh_user.trim().to_string()).filter(|u| !u.is_empty());
    let key_file = match config.ssh_auth {
        SshAuth::Key => config.ssh_key_path.clone().filter(|k| !k.trim().is_empty()),
        _ => None,
    };
    config
        .hosts
        .iter()
        .filter(|h| !h.address.trim().is_empty())
        .map(|h| SshHost {
            name: h.name.clone(),
            address: h.address.trim().to_string(),
            port: h.port.unwrap_or(22),
            user: user.clone(),
            key_file: key_file.clone(),
            password: config.ssh_auth == SshAuth::Password,
        })
        .collect()
}

/// Trusts the hosts a person accepted (by name, with the fingerprint they were
/// shown), reading each key again first: a host that now offers another key than
/// the one accepted is refused, and nothing is recorded. Returns the hosts as they
/// are now.
pub fn trust_accepted(
    home: &Path,
    hosts: &[SshHost],
    accepted: &[(String, String)],
) -> Result<Vec<HostKeyView>> {
    let views = check(home, hosts);
    let mut chosen = Vec::new();
    for (name, seen) in accepted {
        let Some(v) = views.iter().find(|v| &v.host.name == name) else {
            return Err(EngineError::Usage(format!(
                "there is no host `{name}` to trust: check the hosts again"
            )));
        };
        if v.fingerprint.as_deref() != Some(seen.as_str()) {
            return Err(EngineError::HostKeys(format!(
                "{} now offers {} instead of the key you accepted ({seen}); nothing was trusted. This may be an attack: check the hosts again and compare the fingerprint with the host's own",
                v.host.describe(),
                v.fingerprint.as_deref().unwrap_or("no key")
            )));
        }
        chosen.push(v.clone());
    }
    trust(home, &chosen)?;
    Ok(check(home, hosts))
}

/// Reads each host's key and compares it with the installer's `known_hosts`.
pub fn check(home: &Path, hosts: &[SshHost]) -> Vec<HostKeyView> {
    let known = crate::state::fsops::read_regular(&known_hosts_file(home), 16 << 20)
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    hosts.iter().map(|h| check_one(&known, h)).collect()
}

fn check_one(known: &str, host: &SshHost) -> HostKeyView {
    let mut view = HostKeyView {
        host: host.clone(),
        reachable: false,
        fingerprint: None,
        key_type: None,
        trust: Trust::Unreachable,
        trusted_fingerprint: None,
        line: None,
        problem: None,
    };
    if let Err(e) = crate::facts::probe(&host.address, host.port, Duration::from_secs(SCAN_SECONDS))
    {
        view.problem = Some(e);
        return view;
    }
    view.reachable = true;
    let offered = match scan(host) {
        Ok(keys) => keys,
        Err(e) => {
            view.problem = Some(e);
            return view;
        }
    };
    // The key Ansible's ssh will be shown first is the one it checks; ed25519 is
    // what current OpenSSH servers offer and clients prefer, so show that one.
    let Some((key_type, blob)) = offered
        .iter()
        .find(|(t, _)| t == "ssh-ed25519")
        .or(offered.first())
        .cloned()
    else {
        view.problem = Some("it answers but offers no SSH host key".into());
        return view;
    };
    let name = host.known_as();
    let line = format!("{name} {key_type} {blob}");
    view.fingerprint = fingerprint(&line);
    view.key_type = Some(key_type.clone());
    view.line = Some(line);
    let recorded: Vec<(&str, &str)> = known
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let hosts = parts.next()?;
            let t = parts.next()?;
            let b = parts.next()?;
            hosts.split(',').any(|h| h == name).then_some((t, b))
        })
        .collect();
    view.trust = if recorded
        .iter()
        .any(|(t, b)| offered.iter().any(|(ot, ob)| ot == t && ob == b))
    {
        Trust::Trusted
    } else if recorded.is_empty() {
        Trust::Unknown
    } else {
        view.trusted_fingerprint = recorded
            .first()
            .and_then(|(t, b)| fingerprint(&format!("{name} {t} {b}")));
        Trust::Changed
    };
    view
}

/// The keys a host offers: (type, base64 blob).
fn scan(host: &SshHost) -> std::result::Result<Vec<(String, String)>, String> {
    let out = Command::new("ssh-keyscan")
        .args([
            "-T",
            &SCAN_SECONDS.to_string(),
            "-p",
            &host.port.to_string(),
        ])
        .arg(&host.address)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run ssh-keyscan ({e}); install openssh-client"))?;
    let keys: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let _host = parts.next()?;
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect();
    if keys.is_empty() {
        return Err(format!(
            "it did not offer an SSH host key on port {} within {SCAN_SECONDS} s",
            host.port
        ));
    }
    Ok(keys)
}

/// `SHA256:...` of a `known_hosts` line, as `ssh-keygen -l` prints it.
fn fingerprint(line: &str) -> Option<String> {
    let mut child = Command::new("ssh-keygen")
        .args(["-l", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()?
        .write_all(format!("{line}\n").as_bytes())
        .ok()?;
    let out = child.wait_with_output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .map(str::to_string)
}

/// Records the keys of `views` that are not trusted yet (and not changed: a
/// changed key is never replaced here) in the installer's `known_hosts`. Returns
/// the hosts recorded.
pub fn trust(home: &Path, views: &[HostKeyView]) -> Result<Vec<String>> {
    let path = known_hosts_file(home);
    let lines: Vec<&HostKeyView> = views
        .iter()
        .filter(|v| v.trust == Trust::Unknown && v.line.is_some())
        .collect();
    if lines.is_empty() {
        return Ok(Vec::new());
    }
    use crate::state::fsops::FileOps;
    crate::state::fsops::RealFs
        .create_dir_all(home)
        .map_err(|e| EngineError::io("create the folder", home, e))?;
    let mut file = crate::state::fsops::open_append_regular(&path)
        .map_err(|e| EngineError::io("open", &path, e))?;
    let mut text = String::new();
    for v in &lines {
        text.push_str(v.line.as_deref().unwrap_or_default());
        text.push('\n');
    }
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| EngineError::io("write", &path, e))?;
    Ok(lines.iter().map(|v| v.host.name.clone()).collect())
}

/// The refusal for hosts whose key is not trusted, or changed; `None` when every
/// host that answers is trusted (a host that does not answer is left to fail its
/// step as unreachable).
pub fn refusal(home: &Path, views: &[HostKeyView]) -> Option<EngineError> {
    let changed: Vec<String> = views
        .iter()
        .filter(|v| v.trust == Trust::Changed)
        .map(|v| {
            format!(
                "{} now offers {} but {} was trusted",
                v.host.describe(),
                v.fingerprint.as_deref().unwrap_or("?"),
                v.trusted_fingerprint.as_deref().unwrap_or("?")
            )
        })
        .collect();
    if !changed.is_empty() {
        let first = views.iter().find(|v| v.trust == Trust::Changed)?;
        return Some(EngineError::HostKeys(format!(
            "the SSH host key changed: {}. This may be an attack (someone between you and the host); nothing ran. If you know why it changed (the host was reinstalled), remove the old key with `ssh-keygen -R '{}' -f {}`, then check and trust the new one with `thinkube-deploy hosts trust {}`",
            changed.join("; "),
            first.host.known_as(),
            known_hosts_file(home).display(),
            first.host.name
        )));
    }
    let unknown: Vec<&HostKeyView> = views.iter().filter(|v| v.trust == Trust::Unknown).collect();
    if unknown.is_empty() {
        return None;
    }
    Some(EngineError::HostKeys(format!(
        "the SSH host key of {} is not trusted yet; nothing ran. Check each fingerprint (on the host: `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) and trust them with `thinkube-deploy hosts trust {}`",
        unknown
            .iter()
            .map(|v| v.describe())
            .collect::<Vec<_>>()
            .join(", "),
        unknown
            .iter()
            .map(|v| v.host.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    )))
}

/// What `hosts check` found of one host: each check that failed, with what to do.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, Serialize)]
pub struct HostCheck {
    #[serde(flatten)]
    pub host: SshHost,
    pub reachable: bool,
    pub trust: Trust,
    pub fingerprint: Option<String>,
    /// Whether the login worked (`None`: not tried, because an earlier check failed).
    pub login: Option<bool>,
    /// Whether `sudo -n true` worked (`None`: not tried; root needs no sudo).
    pub sudo: Option<bool>,
    pub problems: Vec<String>,
}

/// What a pre-flight may log in with, from memory only (never a file or argument).
#[derive(Debug, Clone, Copy, Default)]
pub struct Logins<'a> {
    /// The SSH password of hosts whose inventory logs in with one.
    pub password: Option<&'a str>,
    /// The password sudo asks for (`ANSIBLE_BECOME_PASSWORD`), when it asks.
    pub become_password: Option<&'a str>,
    /// Whether sudo is checked at all: the plan's playbooks `become` root.
    pub needs_sudo: bool,
    /// What to say when a host logs in with a password that was not given (no key
    /// let it in); the default names `THINKUBE_SSH_PASSWORD`.
    pub missing_password: Option<&'a str>,
}

/// Where a pre-flight's become password comes from.
pub const BECOME_PASSWORD_ENV: &str = "ANSIBLE_BECOME_PASSWORD";

/// Pre-flight of each host: it answers on its port, its key is trusted, the login
/// works (key, agent, or the password in `logins`), and, when the plan becomes
/// root, sudo works for a user other than root (without a password, or with the
/// become password given).
pub fn preflight(home: &Path, hosts: &[SshHost], logins: Logins<'_>) -> Vec<HostCheck> {
    check(home, hosts)
        .into_iter()
        .map(|view| {
            let mut c = HostCheck {
                host: view.host.clone(),
                reachable: view.reachable,
                trust: view.trust,
                fingerprint: view.fingerprint.clone(),
                login: None,
                sudo: None,
                problems: Vec::new(),
            };
            match view.trust {
                Trust::Unreachable => c.problems.push(format!(
                    "does not answer ({}): is it on, and is the port right?",
                    view.problem.as_deref().unwrap_or("no answer")
                )),
                Trust::Unknown => c.problems.push(format!(
                    "its host key ({}) is not trusted: check it, then `thinkube-deploy hosts trust {}`",
                    view.fingerprint.as_deref().unwrap_or("?"),
                    view.host.name
                )),
                Trust::Changed => c.problems.push(format!(
                    "its host key changed ({} now, {} trusted): this may be an attack; see `thinkube-deploy hosts`",
                    view.fingerprint.as_deref().unwrap_or("?"),
                    view.trusted_fingerprint.as_deref().unwrap_or("?")
                )),
                Trust::Trusted => {
                    let login = remote(home, &view.host, logins, "true", None);
                    c.login = Some(login.is_ok());
                    match login {
                        Err(e) => c.problems.push(format!("the login failed: {e}")),
                        Ok(_) if logins.needs_sudo && view.host.user.as_deref() != Some("root") => {
                            let sudo = match logins.become_password {
                                Some(p) => {
                                    remote(home, &view.host, logins, "sudo -S -p '' true", Some(p))
                                }
                                None => remote(home, &view.host, logins, "sudo -n true", None),
                            };
                            c.sudo = Some(sudo.is_ok());
                            if let Err(e) = sudo {
                                c.problems.push(match logins.become_password {
                                    Some(_) => format!(
                                        "sudo did not accept the become password ({e}): check the password given in {BECOME_PASSWORD_ENV}, and that the user may use sudo"
                                    ),
                                    None => format!(
                                        "sudo asks for a password or is not allowed ({e}): give the password in {BECOME_PASSWORD_ENV}, allow the user passwordless sudo, or log in as root"
                                    ),
                                });
                            }
                        }
                        Ok(_) => {}
                    }
                }
            }
            c
        })
        .collect()
}

/// Runs `command` on the host over SSH as Ansible will connect: strict host key
/// checking against the installer's `known_hosts`, its user, port and key; with
/// the password through `sshpass -e` (environment, never an argument) when the
/// inventory logs in with one.
pub(crate) fn remote(
    home: &Path,
    host: &SshHost,
    logins: Logins<'_>,
    command: &str,
    input: Option<&str>,
) -> std::result::Result<String, String> {
    let mut cmd = match (host.password, logins.password) {
        (true, None) => {
            // The inventory's own password is never read here; Ansible offers keys
            // first, so a key that logs in is enough.
            let no_password = SshHost {
                password: false,
                ..host.clone()
            };
            return remote(home, &no_password, logins, command, input).map_err(|_| {
                logins.missing_password.map_or_else(
                    || {
                        format!(
                            "it logs in with a password: give it in {} to check the login",
                            crate::config::SSH_PASSWORD_ENV
                        )
                    },
                    str::to_string,
                )
            });
        }
        (true, Some(p)) => {
            // As Ansible logs in with a password: keys are offered first, then it.
            let mut c = Command::new("sshpass");
            c.arg("-e").arg("ssh").env("SSHPASS", p);
            c
        }
        (false, _) => {
            let mut c = Command::new("ssh");
            c.args(["-o", "BatchMode=yes"]);
            c
        }
    };
    cmd.args(["-o", &format!("ConnectTimeout={SCAN_SECONDS}")])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            known_hosts_file(home).display()
        ))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
        ])
        .args(["-p", &host.port.to_string()]);
    if let Some(key) = &host.key_file {
        cmd.args(["-i", key, "-o", "IdentitiesOnly=yes"]);
    }
    if let Some(user) = &host.user {
        cmd.args(["-l", user]);
    }
    cmd.arg(&host.address)
        .arg("--")
        .arg(command)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not run ssh ({e})"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // What sudo reads (-S), through the SSH channel: never an argument. A
        // command that does not read it closes the pipe, which is no error here.
        let _ = writeln!(stdin, "{text}");
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("could not run ssh ({e})"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("ssh failed")
        .trim()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_hosts_are_read_from_groups_and_children_and_local_ones_left_out() {
        let dir = std::env::temp_dir().join(format!("thinkube-hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let inv = dir.join("inventory.yaml");
        std::fs::write(
            &inv,
            "all:\n  vars:\n    ansible_user: t\n  hosts:\n    here: {ansible_connection: local}\n    a: {ansible_host: 10.0.0.1}\n  children:\n    workers:\n      hosts:\n        b: {ansible_host: 10.0.0.2, ansible_port: 2222}\n        a: {}\n",
        )
        .unwrap();
        let hosts = ssh_hosts(&inv).unwrap();
        let seen: Vec<(&str, &str, u16, Option<&str>)> = hosts
            .iter()
            .map(|h| {
                (
                    h.name.as_str(),
                    h.address.as_str(),
                    h.port,
                    h.user.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("a", "10.0.0.1", 22, Some("t")),
                ("b", "10.0.0.2", 2222, Some("t"))
            ]
        );
        assert_eq!(hosts[1].known_as(), "[10.0.0.2]:2222");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn read(name: &str, text: &str) -> Vec<(String, String, u16, Option<String>, bool)> {
        let dir =
            std::env::temp_dir().join(format!("thinkube-hosts-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let inv = dir.join(name);
        std::fs::write(&inv, text).unwrap();
        let hosts = ssh_hosts(&inv).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        hosts
            .into_iter()
            .map(|h| (h.name, h.address, h.port, h.user, h.password))
            .collect()
    }

    /// The shape the earlier installer's frontend writes
    /// (frontend/src/utils/inventoryGenerator.js at 25e44f0): a host defined with
    /// its variables under `baremetal`, listed again as `{}` under `arch`, `k8s`
    /// and `overlay_nodes`; the controller local; the user in `all.vars`.
    #[test]
    fn the_earlier_installers_yaml_inventory_is_read_as_ansible_reads_it() {
        let text = "all:\n  vars:\n    ansible_user: thinkube\n    ansible_become_pass: \"{{ lookup('env', 'ANSIBLE_BECOME_PASSWORD') }}\"\n  children:\n    arch:\n      children:\n        x86_64:\n          hosts:\n            node1: {}\n            controller: {}\n    baremetal:\n      hosts:\n        node1:\n          ansible_host: 192.168.1.101\n          lan_ip: 192.168.1.101\n          arch: x86_64\n    management:\n      hosts:\n        controller:\n          ansible_connection: local\n          ansible_host: 127.0.0.1\n    k8s:\n      children:\n        k8s_control_plane:\n          hosts:\n            node1: {}\n    overlay_nodes:\n      hosts:\n        node1: {}\n        controller: {}\n";
        assert_eq!(
            read("inventory.yaml", text),
            [(
                "node1".into(),
                "192.168.1.101".into(),
                22,
                Some("thinkube".into()),
                false
            )]
        );
    }

    /// The INI its backend wrote (backend/main_old.py, `generate_inventory`): an INI
    /// inventory was taken for bad YAML and every deploy against it was refused.
    #[test]
    fn an_ini_inventory_is_read_too() {
        let text = "# Generated by thinkube installer\n[all:vars]\nansible_user=thinkube\nansible_become=yes\n\n[baremetal]\nnode1 ansible_host=192.168.1.101\nnode2 ansible_host=192.168.1.102 ansible_port=2222 ansible_password='x'\nhere ansible_connection=local\nweb[01:10]\n\n[microk8s_control_plane]\nnode1\n\n[microk8s:children]\nmicrok8s_control_plane\nmicrok8s\n";
        assert_eq!(
            read("hosts", text),
            [
                (
                    "node1".into(),
                    "192.168.1.101".into(),
                    22,
                    Some("thinkube".into()),
                    false
                ),
                (
                    "node2".into(),
                    "192.168.1.102".into(),
                    2222,
                    Some("thinkube".into()),
                    true
                ),
            ]
        );
    }
}
