//! Plans: YAML files of ordered phases and steps, parsed and validated into a
//! [`Plan`] before anything runs.
//!
//! An invalid plan (unknown keys, duplicate ids, a missing playbook, an unknown flag,
//! a bad gate, a path that leaves the plan's folder) is a [`PlanError`] naming the
//! file, line and column, and what to change. `docs/plans.md` describes the format.

pub mod builtin;
pub mod outline;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};

use crate::state::lifecycle::{PlannedDeployment, PlannedStep};
use crate::state::model::{Configuration, PhaseRecord};

/// An invalid plan: where, and what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", .file.display())]
pub struct PlanError {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// Largest plan file we read: plans are small; anything bigger is a mistake.
pub(crate) const MAX_PLAN_BYTES: usize = 1024 * 1024;

// ---- the file format -------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    #[serde(default)]
    id: Option<Spanned<String>>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    flags: Vec<Spanned<RawFlag>>,
    #[serde(default)]
    vars: Vec<Spanned<RawVar>>,
    #[serde(default)]
    upstream: Option<Spanned<RawUpstream>>,
    #[serde(default)]
    links: Vec<Spanned<RawLink>>,
    #[serde(default)]
    credentials: Option<Spanned<String>>,
    phases: Vec<Spanned<RawPhase>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    title: String,
    url: Spanned<String>,
    #[serde(default)]
    when: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    repository: String,
    commit: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlag {
    name: String,
    #[serde(default)]
    default: bool,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    config: Option<Spanned<RawFlagConfig>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlagConfig {
    file: String,
    key: String,
    #[serde(default)]
    env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVar {
    name: String,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    id: Spanned<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    when: Option<Spanned<String>>,
    #[serde(default)]
    gates: Vec<Spanned<RawGate>>,
    steps: Vec<Spanned<RawStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: Spanned<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    playbook: Option<Spanned<String>>,
    #[serde(default)]
    command: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<Spanned<String>>,
    /// Extra variables for `ansible-playbook -e` (playbook steps only).
    #[serde(default)]
    vars: BTreeMap<String, String>,
    #[serde(default)]
    when: Option<Spanned<String>>,
    #[serde(default)]
    requires_restart: bool,
    #[serde(default)]
    retries: Option<Spanned<u32>>,
    #[serde(default)]
    retry_delay_seconds: Option<u64>,
    /// Runtime facts the step proves for every inventory host when it succeeds.
    #[serde(default)]
    proves: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize, Serialize, Clone, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum RawGate {
    Tcp {
        host: String,
        port: u32,
        #[serde(default)]
        timeout_seconds: Option<u64>,
    },
    Command(Vec<String>),
    FileExists(String),
    InterfaceUp(String),
    VmRunning {
        vms: Vec<String>,
    },
}

// ---- the validated plan ----------------------------------------------------------

/// A validated plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    /// Where the plan came from: a built-in name or the file's path.
    pub source: String,
    /// The folder playbooks and relative paths are resolved against.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// `sha256:<hex>` of the plan file's content.
    pub digest: String,
    pub flags: Vec<FlagDef>,
    pub vars: Vec<VarDef>,
    /// The repository and commit whose playbooks the plan runs, when it runs another
    /// project's: its playbook paths are then relative to a checkout of it.
    pub upstream: Option<Upstream>,
    /// Where the deployed things answer, for the completion page.
    pub links: Vec<Link>,
    /// Where the deployed things' credentials are (`${var}` allowed), in words, for
    /// the completion page. Never a secret itself: it says where one is.
    pub credentials: Option<String>,
    pub phases: Vec<Phase>,
}

/// `links:` of a plan: a title and an address (`${var}` allowed), shown once the
/// deployment completed, when its flag holds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Link {
    pub title: String,
    pub url: String,
    pub when: Option<Condition>,
}

/// `upstream:` of a plan: the project its playbooks come from, pinned to a commit.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Upstream {
    pub repository: String,
    /// 40 hexadecimal digits.
    pub commit: String,
}

impl Upstream {
    /// The checkout's folder name: the repository's last path segment.
    pub fn name(&self) -> &str {
        let r = self.repository.trim_end_matches('/');
        let r = r.strip_suffix(".git").unwrap_or(r);
        r.rsplit(['/', ':']).next().unwrap_or(r)
    }
}

/// The variable that points an upstream plan at a checkout of one's own.
pub const PLAYBOOKS_ROOT: &str = "playbooks_root";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FlagDef {
    pub name: String,
    pub default: bool,
    pub description: Option<String>,
    /// Where the plan's own programs read the same switch, when they do.
    pub config: Option<FlagConfig>,
}

/// `config:` of a flag: the plan's programs read the switch the flag stands for
/// from a YAML file of their own (k0rdent's KOF scripts refuse to run unless
/// `kof.enabled` is true in `config/k0rdent.yaml`). `plan check` and a deployment
/// check that the file agrees with the flag when it is on, before anything runs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FlagConfig {
    /// The YAML file, `${var}`s allowed; a relative one is from the plan's folder.
    pub file: String,
    /// The dotted path of the boolean in it (`kof.enabled`).
    pub key: String,
    /// An environment variable that, when set, names the file the programs read
    /// instead (`K0RDENT_CONFIG_FILE`).
    pub env: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VarDef {
    pub name: String,
    pub default: Option<String>,
    pub description: Option<String>,
}

/// `when: FLAG` or `when: "!FLAG"`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Condition {
    pub flag: String,
    pub negated: bool,
}

impl Condition {
    fn holds(&self, flags: &BTreeMap<String, bool>) -> bool {
        flags.get(&self.flag).copied().unwrap_or(false) != self.negated
    }

    fn reason(&self) -> String {
        if self.negated {
            format!("flag {} is on", self.flag)
        } else {
            format!("flag {} is off", self.flag)
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub id: String,
    pub title: String,
    pub when: Option<Condition>,
    pub gates: Vec<Gate>,
    pub steps: Vec<Step>,
}

/// A check made before a phase starts.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Gate {
    Tcp {
        host: String,
        port: u16,
        timeout_seconds: u64,
    },
    Command {
        argv: Vec<String>,
    },
    FileExists {
        path: String,
    },
    InterfaceUp {
        name: String,
    },
    VmRunning {
        vms: Vec<String>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub id: String,
    pub title: String,
    pub phase: String,
    pub action: Action,
    pub when: Option<Condition>,
    pub requires_restart: bool,
    /// Automatic retries after a failure (0: none).
    pub retries: u32,
    pub retry_delay_seconds: u64,
    /// Runtime facts (`ssh_verified`, `cloud_init_complete`, `vpn_connected`, ...) the
    /// step proves for every host of the inventory when it succeeds.
    pub proves: Vec<String>,
}

/// What a step runs. Strings may contain `${VAR}`, replaced at deploy time.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Action {
    Playbook {
        path: String,
        vars: BTreeMap<String, String>,
    },
    Command {
        argv: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<String>,
    },
}

/// Most automatic retries a step may ask for.
pub(crate) const MAX_RETRIES: u32 = 10;

/// Longest first wait before an automatic retry (later waits double it).
pub(crate) const MAX_RETRY_DELAY_SECONDS: u64 = 3600;

/// Where a plan's files are: on disk beside the plan, or embedded in the binary.
pub trait PlanFiles {
    fn exists(&self, relative: &Path) -> bool;
}

/// A plan file on disk: its files are beside it.
pub(crate) struct DiskFiles<'a>(pub &'a Path);

impl PlanFiles for DiskFiles<'_> {
    fn exists(&self, relative: &Path) -> bool {
        self.0.join(relative).is_file()
    }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

struct Ctx<'a> {
    file: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, at: &serde_saphyr::Location, message: impl Into<String>) -> PlanError {
        PlanError {
            file: self.file.to_path_buf(),
            line: at.line(),
            column: at.column(),
            message: message.into(),
        }
    }
}

/// Parses and validates a plan's text. `file` is shown in errors; `base_dir` is
/// where relative paths point; `files` says which of them exist.
pub fn parse(
    text: &str,
    file: &Path,
    source: &str,
    base_dir: &Path,
    files: &dyn PlanFiles,
) -> Result<Plan, PlanError> {
    let ctx = Ctx { file };
    if text.len() > MAX_PLAN_BYTES {
        return Err(PlanError {
            file: file.to_path_buf(),
            line: 1,
            column: 1,
            message: format!(
                "the plan is {} bytes; plans are at most {MAX_PLAN_BYTES} bytes",
                text.len()
            ),
        });
    }
    let raw: RawPlan = crate::yaml::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        PlanError {
            file: file.to_path_buf(),
            line,
            column,
            message: first_line(&e.to_string()),
        }
    })?;
    let id = match &raw.id {
        Some(id) => {
            check_id(&ctx, id, "plan id")?;
            id.value.clone()
        }
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plan".into()),
    };
    let mut flags = Vec::new();
    for f in &raw.flags {
        if flags.iter().any(|x: &FlagDef| x.name == f.value.name) {
            return Err(ctx.err(
                &f.referenced,
                format!("flag `{}` is declared twice", f.value.name),
            ));
        }
        if !valid_name(&f.value.name) {
            return Err(ctx.err(
                &f.referenced,
                format!(
                    "`{}` is not a valid flag name: use letters, digits, `_` and `-`",
                    f.value.name
                ),
            ));
        }
        flags.push(FlagDef {
            name: f.value.name.clone(),
            default: f.value.default,
            description: f.value.description.clone(),
            config: None,
        });
    }
    let mut vars = Vec::new();
    for v in &raw.vars {
        if vars.iter().any(|x: &VarDef| x.name == v.value.name) {
            return Err(ctx.err(
                &v.referenced,
                format!("variable `{}` is declared twice", v.value.name),
            ));
        }
        if !valid_name(&v.value.name) {
            return Err(ctx.err(
                &v.referenced,
                format!(
                    "`{}` is not a valid variable name: use letters, digits, `_` and `-`",
                    v.value.name
                ),
            ));
        }
        vars.push(VarDef {
            name: v.value.name.clone(),
            default: v.value.default.clone(),
            description: v.value.description.clone(),
        });
    }
    let check_vars = |at: &serde_saphyr::Location, text: &str| -> Result<(), PlanError> {
        for name in var_refs(text).map_err(|m| ctx.err(at, m))? {
            if !vars.iter().any(|v| v.name == name) {
                return Err(ctx.err(
                    at,
                    format!("`${{{name}}}` names an undeclared variable; declare it under `vars:`"),
                ));
            }
        }
        Ok(())
    };
    for (def, raw) in flags.iter_mut().zip(&raw.flags) {
        let Some(c) = &raw.value.config else { continue };
        check_vars(&c.referenced, &c.value.file)?;
        if c.value.file.trim().is_empty() {
            return Err(ctx.err(
                &c.referenced,
                "`config.file` is empty: name the YAML file the programs read".to_string(),
            ));
        }
        if c.value.key.split('.').any(|k| k.trim().is_empty()) {
            return Err(ctx.err(
                &c.referenced,
                format!(
                    "`config.key` `{}` is not a dotted path such as `kof.enabled`",
                    c.value.key
                ),
            ));
        }
        if let Some(env) = &c.value.env
            && (env.is_empty()
                || !env
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_'))
        {
            return Err(ctx.err(
                &c.referenced,
                format!("`config.env` `{env}` is not an environment variable's name"),
            ));
        }
        def.config = Some(FlagConfig {
            file: c.value.file.clone(),
            key: c.value.key.clone(),
            env: c.value.env.clone(),
        });
    }
    let upstream = match &raw.upstream {
        None => None,
        Some(u) => Some(upstream(&ctx, u)?),
    };
    let condition = |w: &Option<Spanned<String>>| -> Result<Option<Condition>, PlanError> {
        let Some(w) = w else { return Ok(None) };
        let text = w.value.trim();
        let (negated, name) = match text.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, text),
        };
        if !flags.iter().any(|f| f.name == name) {
            let known: Vec<&str> = flags.iter().map(|f| f.name.as_str()).collect();
            return Err(ctx.err(
                &w.referenced,
                format!(
                    "`when: {text}` names an unknown flag `{name}`; declare it under `flags:` or use one of: {}",
                    if known.is_empty() { "(none declared)".to_string() } else { known.join(", ") }
                ),
            ));
        }
        Ok(Some(Condition {
            flag: name.to_string(),
            negated,
        }))
    };
    let mut phase_ids = HashSet::new();
    let mut step_ids = HashSet::new();
    let mut phases = Vec::new();
    if raw.phases.is_empty() {
        return Err(PlanError {
            file: file.to_path_buf(),
            line: 1,
            column: 1,
            message: "the plan has no phases; add at least one under `phases:`".into(),
        });
    }
    for p in &raw.phases {
        let rp = &p.value;
        check_id(&ctx, &rp.id, "phase id")?;
        if !phase_ids.insert(rp.id.value.clone()) {
            return Err(ctx.err(
                &rp.id.referenced,
                format!(
                    "phase id `{}` is used twice; phase ids must be unique",
                    rp.id.value
                ),
            ));
        }
        let mut gates = Vec::new();
        for g in &rp.gates {
            gates.push(gate(&ctx, g)?);
        }
        let mut steps = Vec::new();
        if rp.steps.is_empty() {
            return Err(ctx.err(
                &p.referenced,
                format!("phase `{}` has no steps", rp.id.value),
            ));
        }
        for s in &rp.steps {
            let rs = &s.value;
            check_id(&ctx, &rs.id, "step id")?;
            if !step_ids.insert(rs.id.value.clone()) {
                return Err(ctx.err(
                    &rs.id.referenced,
                    format!(
                        "step id `{}` is used twice; step ids must be unique within a plan",
                        rs.id.value
                    ),
                ));
            }
            let action = match (&rs.playbook, &rs.command) {
                (Some(pb), None) => {
                    check_vars(&pb.referenced, &pb.value)?;
                    if !rs.env.is_empty() || rs.cwd.is_some() {
                        return Err(ctx.err(
                            &s.referenced,
                            format!(
                                "step `{}`: `env` and `cwd` go with `command:`, not `playbook:`",
                                rs.id.value
                            ),
                        ));
                    }
                    if var_refs(&pb.value).map(|v| v.is_empty()).unwrap_or(false) {
                        let rel = inside_plan(&ctx, pb, upstream.is_some())?;
                        // An upstream plan's playbooks are in the checkout, checked
                        // when a deployment starts and by `plan check`.
                        if upstream.is_none() && !files.exists(&rel) {
                            return Err(ctx.err(&pb.referenced, format!(
                                "playbook `{}` does not exist (looked in {}); fix the path, which is relative to the plan file",
                                pb.value,
                                base_dir.join(&rel).display()
                            )));
                        }
                    }
                    for value in rs.vars.values() {
                        check_vars(&pb.referenced, value)?;
                    }
                    Action::Playbook {
                        path: pb.value.clone(),
                        vars: rs.vars.clone(),
                    }
                }
                (None, Some(cmd)) => {
                    if cmd.value.is_empty() || cmd.value[0].trim().is_empty() {
                        return Err(ctx.err(
                            &cmd.referenced,
                            format!(
                                "step `{}`: `command` needs at least the program to run",
                                rs.id.value
                            ),
                        ));
                    }
                    for arg in cmd.value.iter().chain(rs.env.values()) {
                        check_vars(&cmd.referenced, arg)?;
                    }
                    if !rs.vars.is_empty() {
                        return Err(ctx.err(&s.referenced, format!("step `{}`: `vars` go with `playbook:`; pass values to a command in its arguments or `env`", rs.id.value)));
                    }
                    if let Some(cwd) = &rs.cwd {
                        check_vars(&cwd.referenced, &cwd.value)?;
                    }
                    Action::Command {
                        argv: cmd.value.clone(),
                        env: rs.env.clone(),
                        cwd: rs.cwd.as_ref().map(|c| c.value.clone()),
                    }
                }
                (Some(_), Some(_)) => {
                    return Err(ctx.err(
                        &s.referenced,
                        format!(
                            "step `{}` has both `playbook` and `command`; a step runs one of them",
                            rs.id.value
                        ),
                    ));
                }
                (None, None) => {
                    return Err(ctx.err(&s.referenced, format!("step `{}` runs nothing: give it `playbook: PATH` or `command: [PROGRAM, ARGS...]`", rs.id.value)));
                }
            };
            let retries = match &rs.retries {
                Some(r) if r.value > MAX_RETRIES => {
                    return Err(ctx.err(
                        &r.referenced,
                        format!("`retries: {}` is too many; at most {MAX_RETRIES}", r.value),
                    ));
                }
                Some(r) => r.value,
                None => 0,
            };
            steps.push(Step {
                id: rs.id.value.clone(),
                title: rs.title.clone().unwrap_or_else(|| rs.id.value.clone()),
                phase: rp.id.value.clone(),
                action,
                when: condition(&rs.when)?,
                requires_restart: rs.requires_restart,
                retries,
                retry_delay_seconds: match rs.retry_delay_seconds {
                    Some(d) if d > MAX_RETRY_DELAY_SECONDS => {
                        return Err(ctx.err(
                            &rs.id.referenced,
                            format!("step `{}`: `retry_delay_seconds: {d}` is too long; at most {MAX_RETRY_DELAY_SECONDS} (one hour)", rs.id.value),
                        ));
                    }
                    Some(d) => d,
                    None => 5,
                },
                proves: match &rs.proves {
                    None => Vec::new(),
                    Some(p) => {
                        for kind in &p.value {
                            let ok = !kind.is_empty()
                                && kind.len() <= 64
                                && kind
                                    .chars()
                                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                            if !ok {
                                return Err(ctx.err(
                                    &p.referenced,
                                    format!(
                                        "step `{}`: `proves: {kind}` is not a fact name: use lower-case letters, digits and `_` (e.g. ssh_verified)",
                                        rs.id.value
                                    ),
                                ));
                            }
                        }
                        p.value.clone()
                    }
                },
            });
        }
        phases.push(Phase {
            id: rp.id.value.clone(),
            title: rp.title.clone().unwrap_or_else(|| rp.id.value.clone()),
            when: condition(&rp.when)?,
            gates,
            steps,
        });
    }
    let mut links = Vec::new();
    for l in &raw.links {
        let url = &l.value.url;
        check_vars(&url.referenced, &url.value)?;
        check_vars(&l.referenced, &l.value.title)?;
        if !(url.value.starts_with("http://") || url.value.starts_with("https://")) {
            return Err(ctx.err(
                &url.referenced,
                format!(
                    "link `{}` is not a web address; links start with `http://` or `https://`",
                    url.value
                ),
            ));
        }
        links.push(Link {
            title: l.value.title.clone(),
            url: url.value.clone(),
            when: condition(&l.value.when)?,
        });
    }
    if let Some(c) = &raw.credentials {
        check_vars(&c.referenced, &c.value)?;
    }
    Ok(Plan {
        links,
        credentials: raw.credentials.as_ref().map(|c| c.value.clone()),
        id,
        title: raw.title.clone().unwrap_or_default(),
        description: raw.description.clone(),
        source: source.to_string(),
        base_dir: base_dir.to_path_buf(),
        digest: sha256(text.as_bytes()),
        flags,
        vars,
        upstream,
        phases,
    })
}

fn upstream(ctx: &Ctx, u: &Spanned<RawUpstream>) -> Result<Upstream, PlanError> {
    let raw = &u.value;
    let commit_ok = raw.commit.len() == 40 && raw.commit.chars().all(|c| c.is_ascii_hexdigit());
    if !commit_ok {
        return Err(ctx.err(
            &u.referenced,
            format!(
                "upstream commit `{}` is not a full commit id: give all 40 hexadecimal digits (git rev-parse COMMIT prints them)",
                raw.commit
            ),
        ));
    }
    let repository = raw.repository.trim();
    if repository.is_empty() || repository.chars().any(char::is_whitespace) {
        return Err(ctx.err(
            &u.referenced,
            "upstream repository must be a URL or path without spaces, e.g. https://github.com/thinkube/thinkube",
        ));
    }
    let upstream = Upstream {
        repository: repository.to_string(),
        commit: raw.commit.to_ascii_lowercase(),
    };
    if !valid_name(upstream.name()) && !upstream.name().contains('.') {
        return Err(ctx.err(
            &u.referenced,
            format!("upstream repository `{repository}` does not end in a name for its checkout's folder"),
        ));
    }
    Ok(upstream)
}

/// The parser's message without its own "error: line N column M: " prefix (the
/// location is printed in front already), first line only.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or(text);
    let trimmed = line.strip_prefix("error: ").unwrap_or(line);
    match (trimmed.starts_with("line "), trimmed.find(": ")) {
        (true, Some(i)) => trimmed[i + 2..].to_string(),
        _ => trimmed.to_string(),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn check_id(ctx: &Ctx, id: &Spanned<String>, what: &str) -> Result<(), PlanError> {
    let ok = !id.value.is_empty()
        && id.value.len() <= 80
        && id
            .value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ctx.err(
            &id.referenced,
            format!(
                "`{}` is not a valid {what}: use letters, digits, `_`, `-` and `.`",
                id.value
            ),
        ))
    }
}

/// The `${NAME}` references in a string.
pub(crate) fn var_refs(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        if i > 0 && rest.as_bytes()[i - 1] == b'$' {
            rest = &rest[i + 2..]; // `$${` is a literal `${`
            continue;
        }
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("`{text}` has `${{` without a closing `}}`"));
        };
        let name = &after[..end];
        if !valid_name(name) {
            return Err(format!(
                "`${{{name}}}` in `{text}` is not a variable reference; write `$${{` for a literal `${{`"
            ));
        }
        out.push(name.to_string());
        rest = &after[end + 1..];
    }
    Ok(out)
}

/// Replaces `${NAME}` with values; every name must have one.
pub(crate) fn substitute(text: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        // `$${` is a literal `${` (for the shell's own `${#T}` or `${HOME}`).
        if i > 0 && rest.as_bytes()[i - 1] == b'$' {
            out.push_str(&rest[..i]);
            out.push('{');
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("`{text}` has `${{` without a closing `}}`"))?;
        let name = &after[..end];
        let value = values.get(name).ok_or_else(|| {
            format!("variable `{name}` has no value: set it with --var {name}=VALUE")
        })?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A literal relative path that stays inside the plan's folder.
fn inside_plan(ctx: &Ctx, path: &Spanned<String>, upstream: bool) -> Result<PathBuf, PlanError> {
    let p = Path::new(&path.value);
    let (folder, leaves) = if upstream {
        ("the upstream checkout", "the checkout's folder")
    } else {
        ("the plan file", "the plan's folder")
    };
    let mut depth: i32 = 0;
    for c in p.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => depth -= 1,
            Component::RootDir | Component::Prefix(_) => {
                return Err(ctx.err(&path.referenced, format!("`{}` is an absolute path; playbook paths are relative to {folder} (use a `${{var}}` for a path elsewhere)", path.value)));
            }
        }
        if depth < 0 {
            return Err(ctx.err(&path.referenced, format!("`{}` leaves {leaves}; playbook paths must stay inside it (use a `${{var}}` for a path elsewhere)", path.value)));
        }
    }
    Ok(p.to_path_buf())
}

fn gate(ctx: &Ctx, g: &Spanned<RawGate>) -> Result<Gate, PlanError> {
    let bad = |m: String| Err(ctx.err(&g.referenced, m));
    match &g.value {
        RawGate::Tcp {
            host,
            port,
            timeout_seconds,
        } => {
            let Ok(port) = u16::try_from(*port) else {
                return bad(format!("tcp gate: port {port} is not a TCP port (1-65535)"));
            };
            if port == 0 || host.trim().is_empty() {
                return bad("tcp gate: give `host` and a `port` from 1 to 65535".into());
            }
            let timeout_seconds = timeout_seconds.unwrap_or(5);
            if timeout_seconds == 0 || timeout_seconds > 600 {
                return bad(format!(
                    "tcp gate: timeout_seconds {timeout_seconds} must be from 1 to 600"
                ));
            }
            Ok(Gate::Tcp {
                host: host.clone(),
                port,
                timeout_seconds,
            })
        }
        RawGate::Command(argv) if argv.is_empty() => {
            bad("command gate: give the program to run, e.g. `command: [test, -d, /srv]`".into())
        }
        RawGate::Command(argv) => Ok(Gate::Command { argv: argv.clone() }),
        RawGate::FileExists(p) if p.trim().is_empty() => {
            bad("file_exists gate: give a path".into())
        }
        RawGate::FileExists(p) => Ok(Gate::FileExists { path: p.clone() }),
        RawGate::InterfaceUp(n) if !n.contains("${") && !valid_name(n) && !n.contains('.') => {
            bad(format!("interface_up gate: `{n}` is not an interface name"))
        }
        RawGate::InterfaceUp(n) => Ok(Gate::InterfaceUp { name: n.clone() }),
        RawGate::VmRunning { vms } if vms.is_empty() => {
            bad("vm_running gate: list the VMs under `vms:`".into())
        }
        RawGate::VmRunning { vms } => Ok(Gate::VmRunning { vms: vms.clone() }),
    }
}

// ---- resolving flags and variables -----------------------------------------------

/// A bad `--flag` or `--var`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ChoiceError(pub String);

/// Flag and variable values for a deployment: the plan's defaults, overridden.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Choices {
    pub flags: BTreeMap<String, bool>,
    pub vars: BTreeMap<String, String>,
}

impl Plan {
    /// The plan's defaults overridden by `flags` and `vars`; unknown names are refused.
    pub fn choose(
        &self,
        flags: &BTreeMap<String, bool>,
        vars: &BTreeMap<String, String>,
    ) -> Result<Choices, ChoiceError> {
        let mut out = Choices::default();
        for f in &self.flags {
            out.flags.insert(f.name.clone(), f.default);
        }
        for (name, on) in flags {
            if !out.flags.contains_key(name) {
                return Err(ChoiceError(format!(
                    "plan {} has no flag `{name}`; its flags: {}",
                    self.id,
                    self.flags
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            out.flags.insert(name.clone(), *on);
        }
        for v in &self.vars {
            if let Some(d) = &v.default {
                out.vars.insert(v.name.clone(), d.clone());
            }
        }
        for (name, value) in vars {
            if !self.vars.iter().any(|v| &v.name == name) {
                return Err(ChoiceError(format!(
                    "plan {} has no variable `{name}`; its variables: {}",
                    self.id,
                    self.vars
                        .iter()
                        .map(|v| v.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            out.vars.insert(name.clone(), value.clone());
        }
        Ok(out)
    }

    /// Why a step does not apply with these flags (`None`: it applies).
    pub fn skip_reason(
        &self,
        phase: &Phase,
        step: &Step,
        flags: &BTreeMap<String, bool>,
    ) -> Option<String> {
        if let Some(c) = &phase.when
            && !c.holds(flags)
        {
            return Some(format!("{} (phase {})", c.reason(), phase.id));
        }
        step.when
            .as_ref()
            .filter(|c| !c.holds(flags))
            .map(Condition::reason)
    }

    /// The links that hold with these choices, their variables substituted (a link
    /// whose variable has no value is left out).
    pub fn links_for(&self, choices: &Choices) -> Vec<(String, String)> {
        self.links
            .iter()
            .filter(|l| l.when.as_ref().is_none_or(|c| c.holds(&choices.flags)))
            .filter_map(|l| {
                let title = substitute(&l.title, &choices.vars).ok()?;
                let url = substitute(&l.url, &choices.vars).ok()?;
                Some((title, url))
            })
            .collect()
    }

    /// The plan's `credentials:` with its variables substituted (none when a
    /// variable it names has no value).
    pub fn credentials_for(&self, choices: &Choices) -> Option<String> {
        self.credentials
            .as_deref()
            .and_then(|c| substitute(c, &choices.vars).ok())
    }

    /// Every step with its phase, in plan order.
    pub fn steps(&self) -> impl Iterator<Item = (&Phase, &Step)> {
        self.phases
            .iter()
            .flat_map(|p| p.steps.iter().map(move |s| (p, s)))
    }

    /// The step's action with variables substituted (what actually runs).
    pub(crate) fn resolved_action(
        &self,
        step: &Step,
        choices: &Choices,
    ) -> Result<Action, ChoiceError> {
        let sub = |t: &str| {
            substitute(t, &choices.vars)
                .map_err(|e| ChoiceError(format!("step `{}`: {e}", step.id)))
        };
        Ok(match &step.action {
            Action::Playbook { path, vars } => Action::Playbook {
                path: sub(path)?,
                vars: vars
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), sub(v)?)))
                    .collect::<Result<_, ChoiceError>>()?,
            },
            Action::Command { argv, env, cwd } => Action::Command {
                argv: argv.iter().map(|a| sub(a)).collect::<Result<_, _>>()?,
                env: env
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), sub(v)?)))
                    .collect::<Result<_, ChoiceError>>()?,
                cwd: cwd.as_deref().map(sub).transpose()?,
            },
        })
    }

    /// The deployment this plan starts, with these choices. Every applicable step's
    /// variables must have values.
    pub(crate) fn planned(
        &self,
        deployment_id: &str,
        choices: &Choices,
        answers: BTreeMap<String, serde_json::Value>,
    ) -> Result<PlannedDeployment, ChoiceError> {
        let mut steps = Vec::new();
        let without_secrets = Choices {
            flags: choices.flags.clone(),
            vars: choices
                .vars
                .iter()
                .map(|(k, v)| match crate::secrets::is_secret_key(k) {
                    true => (k.clone(), format!("${{{k}}}")),
                    false => (k.clone(), v.clone()),
                })
                .collect(),
        };
        for (phase, step) in self.steps() {
            let skip_reason = self.skip_reason(phase, step, &choices.flags);
            // The digest is taken with secret values left out (as their `${NAME}`):
            // an unsalted hash of a step holding a short secret gives the secret away.
            let action = if skip_reason.is_none() {
                self.resolved_action(step, choices)?;
                Some(self.resolved_action(step, &without_secrets)?)
            } else {
                None
            };
            steps.push(PlannedStep {
                id: step.id.clone(),
                phase: phase.id.clone(),
                title: step.title.clone(),
                source: Some(describe(&step.action)),
                definition_digest: Some(step_digest(step, action.as_ref())),
                skip_reason,
            });
        }
        Ok(PlannedDeployment {
            id: deployment_id.to_string(),
            plan_id: self.id.clone(),
            plan_source: Some(self.source.clone()),
            plan_digest: self.digest.clone(),
            // Secret-looking variables (passwords, tokens, keys) are used for this run
            // only and never stored: a later run asks for them again.
            configuration: Configuration {
                flags: choices.flags.clone(),
                vars: choices
                    .vars
                    .iter()
                    .filter(|(k, _)| !crate::secrets::is_secret_key(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                answers,
                inventory: None,
            },
            phases: self
                .phases
                .iter()
                .map(|p| PhaseRecord {
                    id: p.id.clone(),
                    title: p.title.clone(),
                })
                .collect(),
            steps,
        })
    }
}

/// What a step runs, for people.
pub(crate) fn describe(action: &Action) -> String {
    match action {
        Action::Playbook { path, .. } => format!("playbook {path}"),
        Action::Command { argv, .. } => format!("command {}", argv.join(" ")),
    }
}

/// sha256 of a step's definition, to tell when it changed since it ran.
pub(crate) fn step_digest(step: &Step, resolved: Option<&Action>) -> String {
    let value = serde_json::json!({
        "action": resolved.unwrap_or(&step.action),
        "requires_restart": step.requires_restart,
    });
    sha256(value.to_string().as_bytes())
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negated {
            write!(f, "!{}", self.flag)
        } else {
            f.write_str(&self.flag)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files(&'static [&'static str]);
    impl PlanFiles for Files {
        fn exists(&self, relative: &Path) -> bool {
            self.0.iter().any(|f| Path::new(f) == relative)
        }
    }

    fn parse_with(yaml: &str, files: &'static [&'static str]) -> Result<Plan, PlanError> {
        parse(
            yaml,
            Path::new("plan.yaml"),
            "plan.yaml",
            Path::new("/plans"),
            &Files(files),
        )
    }

    /// Why a plan is refused: where (`line:column`) and a fragment of the message.
    struct Refusal {
        case: &'static str,
        yaml: String,
        at: (u64, u64),
        says: &'static str,
    }

    /// `None` when `r` is refused as it should be, else what went wrong.
    fn check_refusal(r: &Refusal) -> Option<String> {
        let e = match parse_with(&r.yaml, &["ok.yaml"]) {
            Ok(_) => return Some(format!("{}: was accepted", r.case)),
            Err(e) => e,
        };
        let at = (e.line, e.column);
        (at != r.at || !e.message.contains(r.says) || e.message.starts_with("error:")).then(|| {
            format!(
                "{}: refused at {}:{} with \"{e}\", wanted {}:{} saying \"{}\"",
                r.case, at.0, at.1, r.at.0, r.at.1, r.says
            )
        })
    }

    const STEP: &str = "      - id: s\n        command: [\"true\"]\n";

    fn one_phase(extra_step_lines: &str) -> String {
        format!(
            "phases:\n  - id: p\n    steps:\n      - id: s\n        command: [\"true\"]\n{extra_step_lines}"
        )
    }

    fn steps(step_lines: &str) -> String {
        format!("phases:\n  - id: p\n    steps:\n      - id: s\n{step_lines}")
    }

    fn refusals() -> Vec<Refusal> {
        let r = |case, yaml: String, at, says| Refusal {
            case,
            yaml,
            at,
            says,
        };
        let gate = |g: &str| {
            format!(
                "phases:\n  - id: p\n    gates:\n      - {g}\n    steps:\n      - id: s\n        command: [x]\n"
            )
        };
        vec![
            r("unknown key", one_phase("        bogus: 1\n"), (6, 9), "unknown field `bogus`"),
            r("duplicate step id", format!("{}{STEP}", one_phase("")), (6, 13), "step id `s` is used twice"),
            r("undeclared flag", one_phase("        when: gpu\n"), (6, 15), "unknown flag `gpu`"),
            r("too many retries", one_phase("        retries: 99\n"), (6, 18), "too many"),
            r("malformed YAML", "phases: [\n".into(), (1, 9), "unclosed bracket"),
            r("no phases", "phases: []\n".into(), (1, 1), "no phases"),
            r("bad TCP port", gate("tcp: {host: x, port: 99999}"), (4, 9), "not a TCP port"),
            r("unknown gate", gate("wat: 1"), (4, 9), "unknown variant `wat`"),
            r("path leaves the folder", steps("        playbook: ../../etc/x.yaml\n"), (5, 19), "leaves the plan's folder"),
            r("absolute path", steps("        playbook: /etc/x.yaml\n"), (5, 19), "absolute path"),
            r("missing playbook", steps("        playbook: missing.yaml\n"), (5, 19), "does not exist"),
            r("playbook and command", steps("        playbook: ok.yaml\n        command: [x]\n"), (4, 9), "both `playbook` and `command`"),
            r("runs nothing", steps("        title: nothing\n"), (4, 9), "runs nothing"),
            r("undeclared variable", steps("        command: [\"${nope}/x\"]\n"), (5, 18), "undeclared variable"),
            r("link not a web address", format!("links:\n  - title: x\n    url: ftp://h/\n{}", one_phase("")), (3, 10), "not a web address"),
            r("link with an undeclared variable", format!("links:\n  - title: x\n    url: \"http://${{nope}}/\"\n{}", one_phase("")), (3, 10), "undeclared variable"),
            r("credentials with an undeclared variable", format!("credentials: \"in ${{nope}}/.env\"\n{}", one_phase("")), (1, 14), "undeclared variable"),
            r("flag config with an undeclared variable", format!("flags:\n  - name: kof\n    config:\n      file: \"${{nope}}/k.yaml\"\n      key: kof.enabled\n{}", one_phase("")), (4, 7), "undeclared variable"),
            r("flag config key not a dotted path", format!("flags:\n  - name: kof\n    config:\n      file: k.yaml\n      key: kof..enabled\n{}", one_phase("")), (4, 7), "not a dotted path"),
            r("flag config env not a name", format!("flags:\n  - name: kof\n    config:\n      file: k.yaml\n      key: kof.enabled\n      env: \"A B\"\n{}", one_phase("")), (4, 7), "not an environment variable"),
            r("flag config without a key", format!("flags:\n  - name: kof\n    config:\n      file: k.yaml\n{}", one_phase("")), (4, 7), "key"),
            r("link behind an undeclared flag", format!("links:\n  - title: x\n    url: http://h/\n    when: gpu\n{}", one_phase("")), (4, 11), "unknown flag `gpu`"),
            r("bad phase id", "phases:\n  - id: p/q\n    steps:\n      - id: s\n        command: [x]\n".into(), (2, 9), "not a valid phase id"),
            r(
                "flag declared twice",
                "flags:\n  - name: a\n  - name: a\nphases:\n  - id: p\n    steps:\n      - id: s\n        command: [x]\n".into(),
                (3, 5),
                "declared twice",
            ),
        ]
    }

    #[test]
    fn invalid_plans_are_refused_with_line_column_and_what_to_change() {
        let wrong: Vec<String> = refusals().iter().filter_map(check_refusal).collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn the_refusal_check_notices_a_wrong_place_or_message() {
        let good = Refusal {
            case: "c",
            yaml: "phases: []\n".into(),
            at: (1, 1),
            says: "no phases",
        };
        assert_eq!(check_refusal(&good), None);
        assert!(
            check_refusal(&Refusal { at: (2, 1), ..good })
                .is_some_and(|m| m.contains("wanted 2:1"))
        );
        let good = Refusal {
            case: "c",
            yaml: "phases: []\n".into(),
            at: (1, 1),
            says: "no phases",
        };
        assert!(
            check_refusal(&Refusal {
                says: "another message",
                ..good
            })
            .is_some()
        );
        let accepted = Refusal {
            case: "c",
            yaml: one_phase(""),
            at: (1, 1),
            says: "x",
        };
        assert_eq!(check_refusal(&accepted).as_deref(), Some("c: was accepted"));
    }

    const GOOD: &str = "id: demo
flags:
  - name: gpu
    default: false
  - name: web
    default: true
vars:
  - name: root
  - name: port
    default: \"8080\"
phases:
  - id: base
    steps:
      - id: a
        playbook: ok.yaml
        vars: {port: \"${port}\"}
      - id: b
        command: [\"${root}/run.sh\", \"--port\", \"${port}\"]
        when: \"!web\"
  - id: accel
    when: gpu
    gates:
      - tcp: {host: localhost, port: 22}
    steps:
      - id: c
        command: [x]
        requires_restart: true
        retries: 2
";

    /// `definition_digest` was an unsalted sha256 over the step with its secret
    /// substituted, so a short secret could be found offline by trying values. It
    /// is taken with secrets left as `${NAME}`: the same whatever the secret, and
    /// still different when an ordinary variable changes.
    #[test]
    fn a_steps_digest_does_not_depend_on_a_secrets_value() {
        let yaml = "id: d\nvars:\n  - name: db_password\n  - name: host\nphases:\n  - id: p\n    steps:\n      - id: s\n        command: [sh, -c, \"login ${host} ${db_password}\"]\n";
        let plan = parse_with(yaml, &[]).unwrap();
        let digest = |pw: &str, host: &str| {
            let vars = BTreeMap::from([
                ("db_password".to_string(), pw.to_string()),
                ("host".to_string(), host.to_string()),
            ]);
            let choices = plan.choose(&BTreeMap::new(), &vars).unwrap();
            let planned = plan.planned("d1", &choices, BTreeMap::new()).unwrap();
            planned.steps[0].definition_digest.clone().unwrap()
        };
        assert_eq!(digest("1234", "a"), digest("hunter2", "a"));
        assert_ne!(digest("1234", "a"), digest("1234", "b"));
        let with_placeholder = step_digest(
            &plan.phases[0].steps[0],
            Some(&Action::Command {
                argv: vec!["sh".into(), "-c".into(), "login a ${db_password}".into()],
                env: BTreeMap::new(),
                cwd: None,
            }),
        );
        assert_eq!(digest("1234", "a"), with_placeholder);
    }

    #[test]
    fn flags_decide_applicability_and_vars_are_substituted() {
        let plan = parse_with(GOOD, &["ok.yaml"]).unwrap();
        assert_eq!(plan.id, "demo");
        assert!(plan.digest.starts_with("sha256:"));
        let choices = plan
            .choose(
                &BTreeMap::new(),
                &BTreeMap::from([("root".into(), "/srv".into())]),
            )
            .unwrap();
        let planned = plan.planned("d1", &choices, BTreeMap::new()).unwrap();
        let skips: Vec<Option<&str>> = planned
            .steps
            .iter()
            .map(|s| s.skip_reason.as_deref())
            .collect();
        assert_eq!(
            skips,
            [
                None,
                Some("flag web is on"),
                Some("flag gpu is off (phase accel)")
            ]
        );
        let on = plan
            .choose(
                &BTreeMap::from([("gpu".into(), true), ("web".into(), false)]),
                &BTreeMap::from([("root".into(), "/srv".into())]),
            )
            .unwrap();
        let b = &plan.phases[0].steps[1];
        assert_eq!(
            plan.resolved_action(b, &on).unwrap(),
            Action::Command {
                argv: vec!["/srv/run.sh".into(), "--port".into(), "8080".into()],
                env: BTreeMap::new(),
                cwd: None
            }
        );
        assert_eq!(
            plan.phases[1].gates,
            [Gate::Tcp {
                host: "localhost".into(),
                port: 22,
                timeout_seconds: 5
            }]
        );
        assert_eq!(plan.phases[1].steps[0].retries, 2);
    }

    #[test]
    fn unknown_choices_and_missing_values_are_refused() {
        let plan = parse_with(GOOD, &["ok.yaml"]).unwrap();
        let e = plan
            .choose(&BTreeMap::from([("gpuu".into(), true)]), &BTreeMap::new())
            .unwrap_err();
        assert!(
            e.0.contains("no flag `gpuu`") && e.0.contains("gpu, web"),
            "{e}"
        );
        let e = plan
            .choose(
                &BTreeMap::new(),
                &BTreeMap::from([("rot".into(), "x".into())]),
            )
            .unwrap_err();
        assert!(e.0.contains("no variable `rot`"), "{e}");
        // `root` has no default; step b needs it once web is off.
        let choices = plan
            .choose(&BTreeMap::from([("web".into(), false)]), &BTreeMap::new())
            .unwrap();
        let e = plan.planned("d1", &choices, BTreeMap::new()).unwrap_err();
        assert!(e.0.contains("--var root=VALUE"), "{e}");
    }

    #[test]
    fn a_step_digest_changes_with_its_definition_only() {
        let plan = parse_with(GOOD, &["ok.yaml"]).unwrap();
        let changed = parse_with(&GOOD.replace("--port", "--listen"), &["ok.yaml"]).unwrap();
        let d = |p: &Plan, i: usize| step_digest(&p.phases[0].steps[i], None);
        assert_eq!(d(&plan, 0), d(&changed, 0));
        assert_ne!(d(&plan, 1), d(&changed, 1));
        assert_ne!(plan.digest, changed.digest);
    }

    #[test]
    fn substitution_reports_unclosed_and_missing() {
        let vals = BTreeMap::from([("a".to_string(), "1".to_string())]);
        assert_eq!(substitute("x${a}y${a}", &vals).unwrap(), "x1y1");
        // `$${` is a literal `${` (the shell's `${#T}`); `$$` alone stays as it is.
        assert_eq!(
            substitute("n=$${#T} $$ ${a}", &vals).unwrap(),
            "n=${#T} $$ 1"
        );
        assert_eq!(var_refs("$${#T} ${a}").unwrap(), ["a"]);
        assert!(
            var_refs("${#T}")
                .unwrap_err()
                .contains("write `$${` for a literal")
        );
        assert!(
            substitute("${b}", &vals)
                .unwrap_err()
                .contains("--var b=VALUE")
        );
        assert!(
            substitute("${a", &vals)
                .unwrap_err()
                .contains("without a closing")
        );
    }
}
