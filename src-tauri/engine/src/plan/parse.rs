//! Reading a plan's text: the file format as serde sees it (`Raw*`), and its
//! validation into a [`Plan`], each problem a [`PlanError`] at its line and column.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::*;

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

    /// A problem of the whole file, shown at its start.
    fn at_start(&self, message: impl Into<String>) -> PlanError {
        PlanError {
            file: self.file.to_path_buf(),
            line: 1,
            column: 1,
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
    let raw = read_raw(&ctx, text)?;
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
    let mut flags = declared_flags(&ctx, &raw.flags)?;
    let vars = declared_vars(&ctx, &raw.vars)?;
    for (def, raw) in flags.iter_mut().zip(&raw.flags) {
        if let Some(c) = &raw.value.config {
            def.config = Some(flag_config(&ctx, &vars, c)?);
        }
    }
    let upstream = match &raw.upstream {
        None => None,
        Some(u) => Some(upstream(&ctx, u)?),
    };
    let scope = Scope {
        ctx: &ctx,
        flags: &flags,
        vars: &vars,
        upstream: upstream.is_some(),
        base_dir,
        files,
    };
    let phases = scope.phases(&raw.phases)?;
    let links = raw
        .links
        .iter()
        .map(|l| scope.link(l))
        .collect::<Result<_, _>>()?;
    if let Some(c) = &raw.credentials {
        scope.check_vars(&c.referenced, &c.value)?;
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

/// The text as the file format, within the size limit.
fn read_raw(ctx: &Ctx, text: &str) -> Result<RawPlan, PlanError> {
    if text.len() > MAX_PLAN_BYTES {
        return Err(ctx.at_start(format!(
            "the plan is {} bytes; plans are at most {MAX_PLAN_BYTES} bytes",
            text.len()
        )));
    }
    crate::yaml::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        PlanError {
            file: ctx.file.to_path_buf(),
            line,
            column,
            message: first_line(&e.to_string()),
        }
    })
}

/// `flags:`, each named once and validly (their `config` is read once the
/// variables it may name are known).
fn declared_flags(ctx: &Ctx, raw: &[Spanned<RawFlag>]) -> Result<Vec<FlagDef>, PlanError> {
    let mut flags: Vec<FlagDef> = Vec::new();
    for f in raw {
        declared_once(ctx, &f.referenced, "flag", &f.value.name, |n| {
            flags.iter().any(|x| x.name == n)
        })?;
        flags.push(FlagDef {
            name: f.value.name.clone(),
            default: f.value.default,
            description: f.value.description.clone(),
            config: None,
        });
    }
    Ok(flags)
}

/// `vars:`, each named once and validly.
fn declared_vars(ctx: &Ctx, raw: &[Spanned<RawVar>]) -> Result<Vec<VarDef>, PlanError> {
    let mut vars: Vec<VarDef> = Vec::new();
    for v in raw {
        declared_once(ctx, &v.referenced, "variable", &v.value.name, |n| {
            vars.iter().any(|x| x.name == n)
        })?;
        vars.push(VarDef {
            name: v.value.name.clone(),
            default: v.value.default.clone(),
            description: v.value.description.clone(),
        });
    }
    Ok(vars)
}

/// A flag's or variable's name: not declared before, and a valid name.
fn declared_once(
    ctx: &Ctx,
    at: &serde_saphyr::Location,
    what: &str,
    name: &str,
    seen: impl Fn(&str) -> bool,
) -> Result<(), PlanError> {
    if seen(name) {
        return Err(ctx.err(at, format!("{what} `{name}` is declared twice")));
    }
    if !valid_name(name) {
        return Err(ctx.err(
            at,
            format!("`{name}` is not a valid {what} name: use letters, digits, `_` and `-`"),
        ));
    }
    Ok(())
}

/// A flag's `config:`: a file (which may name variables), a dotted key, an
/// environment variable's name.
fn flag_config(
    ctx: &Ctx,
    vars: &[VarDef],
    c: &Spanned<RawFlagConfig>,
) -> Result<FlagConfig, PlanError> {
    check_vars(ctx, vars, &c.referenced, &c.value.file)?;
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
    Ok(FlagConfig {
        file: c.value.file.clone(),
        key: c.value.key.clone(),
        env: c.value.env.clone(),
    })
}

/// Every `${NAME}` in `text` names a declared variable.
fn check_vars(
    ctx: &Ctx,
    vars: &[VarDef],
    at: &serde_saphyr::Location,
    text: &str,
) -> Result<(), PlanError> {
    for name in var_refs(text).map_err(|m| ctx.err(at, m))? {
        if !vars.iter().any(|v| v.name == name) {
            return Err(ctx.err(
                at,
                format!("`${{{name}}}` names an undeclared variable; declare it under `vars:`"),
            ));
        }
    }
    Ok(())
}

/// What the phases, steps and links are checked against: the declared flags and
/// variables, and where the plan's own files are.
struct Scope<'a> {
    ctx: &'a Ctx<'a>,
    flags: &'a [FlagDef],
    vars: &'a [VarDef],
    /// The playbooks are another project's (checked in its checkout, not here).
    upstream: bool,
    base_dir: &'a Path,
    files: &'a dyn PlanFiles,
}

impl Scope<'_> {
    fn check_vars(&self, at: &serde_saphyr::Location, text: &str) -> Result<(), PlanError> {
        check_vars(self.ctx, self.vars, at, text)
    }

    /// `when: FLAG` or `when: "!FLAG"`, naming a declared flag.
    fn condition(&self, w: &Option<Spanned<String>>) -> Result<Option<Condition>, PlanError> {
        let Some(w) = w else { return Ok(None) };
        let text = w.value.trim();
        let (negated, name) = match text.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, text),
        };
        if !self.flags.iter().any(|f| f.name == name) {
            let known: Vec<&str> = self.flags.iter().map(|f| f.name.as_str()).collect();
            return Err(self.ctx.err(
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
    }

    /// The phases, at least one, with ids unique among phases and step ids unique in
    /// the plan.
    fn phases(&self, raw: &[Spanned<RawPhase>]) -> Result<Vec<Phase>, PlanError> {
        if raw.is_empty() {
            return Err(self
                .ctx
                .at_start("the plan has no phases; add at least one under `phases:`"));
        }
        let mut phase_ids = HashSet::new();
        let mut step_ids = HashSet::new();
        let mut phases = Vec::new();
        for p in raw {
            let rp = &p.value;
            check_id(self.ctx, &rp.id, "phase id")?;
            if !phase_ids.insert(rp.id.value.clone()) {
                return Err(self.ctx.err(
                    &rp.id.referenced,
                    format!(
                        "phase id `{}` is used twice; phase ids must be unique",
                        rp.id.value
                    ),
                ));
            }
            let gates = rp
                .gates
                .iter()
                .map(|g| gate(self.ctx, g))
                .collect::<Result<_, _>>()?;
            if rp.steps.is_empty() {
                return Err(self.ctx.err(
                    &p.referenced,
                    format!("phase `{}` has no steps", rp.id.value),
                ));
            }
            let mut steps = Vec::new();
            for s in &rp.steps {
                check_id(self.ctx, &s.value.id, "step id")?;
                if !step_ids.insert(s.value.id.value.clone()) {
                    return Err(self.ctx.err(
                        &s.value.id.referenced,
                        format!(
                            "step id `{}` is used twice; step ids must be unique within a plan",
                            s.value.id.value
                        ),
                    ));
                }
                steps.push(self.step(&rp.id.value, s)?);
            }
            phases.push(Phase {
                id: rp.id.value.clone(),
                title: rp.title.clone().unwrap_or_else(|| rp.id.value.clone()),
                when: self.condition(&rp.when)?,
                gates,
                steps,
            });
        }
        Ok(phases)
    }

    /// One step of phase `phase` (its id already checked).
    fn step(&self, phase: &str, s: &Spanned<RawStep>) -> Result<Step, PlanError> {
        let rs = &s.value;
        let action = self.action(s)?;
        let retries = match &rs.retries {
            Some(r) if r.value > MAX_RETRIES => {
                return Err(self.ctx.err(
                    &r.referenced,
                    format!("`retries: {}` is too many; at most {MAX_RETRIES}", r.value),
                ));
            }
            Some(r) => r.value,
            None => 0,
        };
        let when = self.condition(&rs.when)?;
        let retry_delay_seconds = match rs.retry_delay_seconds {
            Some(d) if d > MAX_RETRY_DELAY_SECONDS => {
                return Err(self.ctx.err(
                    &rs.id.referenced,
                    format!("step `{}`: `retry_delay_seconds: {d}` is too long; at most {MAX_RETRY_DELAY_SECONDS} (one hour)", rs.id.value),
                ));
            }
            Some(d) => d,
            None => 5,
        };
        Ok(Step {
            id: rs.id.value.clone(),
            title: rs.title.clone().unwrap_or_else(|| rs.id.value.clone()),
            phase: phase.to_string(),
            action,
            when,
            requires_restart: rs.requires_restart,
            retries,
            retry_delay_seconds,
            proves: self.proves(rs)?,
        })
    }

    /// A step's `playbook:` or `command:` (exactly one), with the keys that go with it.
    fn action(&self, s: &Spanned<RawStep>) -> Result<Action, PlanError> {
        let rs = &s.value;
        let id = &rs.id.value;
        match (&rs.playbook, &rs.command) {
            (Some(pb), None) => {
                self.check_vars(&pb.referenced, &pb.value)?;
                if !rs.env.is_empty() || rs.cwd.is_some() {
                    return Err(self.ctx.err(
                        &s.referenced,
                        format!("step `{id}`: `env` and `cwd` go with `command:`, not `playbook:`"),
                    ));
                }
                if var_refs(&pb.value).map(|v| v.is_empty()).unwrap_or(false) {
                    let rel = inside_plan(self.ctx, pb, self.upstream)?;
                    // An upstream plan's playbooks are in the checkout, checked
                    // when a deployment starts and by `plan check`.
                    if !self.upstream && !self.files.exists(&rel) {
                        return Err(self.ctx.err(&pb.referenced, format!(
                            "playbook `{}` does not exist (looked in {}); fix the path, which is relative to the plan file",
                            pb.value,
                            self.base_dir.join(&rel).display()
                        )));
                    }
                }
                for value in rs.vars.values() {
                    self.check_vars(&pb.referenced, value)?;
                }
                Ok(Action::Playbook {
                    path: pb.value.clone(),
                    vars: rs.vars.clone(),
                })
            }
            (None, Some(cmd)) => {
                if cmd.value.is_empty() || cmd.value[0].trim().is_empty() {
                    return Err(self.ctx.err(
                        &cmd.referenced,
                        format!("step `{id}`: `command` needs at least the program to run"),
                    ));
                }
                for arg in cmd.value.iter().chain(rs.env.values()) {
                    self.check_vars(&cmd.referenced, arg)?;
                }
                if !rs.vars.is_empty() {
                    return Err(self.ctx.err(&s.referenced, format!("step `{id}`: `vars` go with `playbook:`; pass values to a command in its arguments or `env`")));
                }
                if let Some(cwd) = &rs.cwd {
                    self.check_vars(&cwd.referenced, &cwd.value)?;
                }
                Ok(Action::Command {
                    argv: cmd.value.clone(),
                    env: rs.env.clone(),
                    cwd: rs.cwd.as_ref().map(|c| c.value.clone()),
                })
            }
            (Some(_), Some(_)) => Err(self.ctx.err(
                &s.referenced,
                format!("step `{id}` has both `playbook` and `command`; a step runs one of them"),
            )),
            (None, None) => Err(self.ctx.err(&s.referenced, format!("step `{id}` runs nothing: give it `playbook: PATH` or `command: [PROGRAM, ARGS...]`"))),
        }
    }

    /// A step's `proves:`: fact names.
    fn proves(&self, rs: &RawStep) -> Result<Vec<String>, PlanError> {
        let Some(p) = &rs.proves else {
            return Ok(Vec::new());
        };
        for kind in &p.value {
            let ok = !kind.is_empty()
                && kind.len() <= 64
                && kind
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                return Err(self.ctx.err(
                    &p.referenced,
                    format!(
                        "step `{}`: `proves: {kind}` is not a fact name: use lower-case letters, digits and `_` (e.g. ssh_verified)",
                        rs.id.value
                    ),
                ));
            }
        }
        Ok(p.value.clone())
    }

    /// One of `links:`: a web address and a title, either naming variables.
    fn link(&self, l: &Spanned<RawLink>) -> Result<Link, PlanError> {
        let url = &l.value.url;
        self.check_vars(&url.referenced, &url.value)?;
        self.check_vars(&l.referenced, &l.value.title)?;
        if !(url.value.starts_with("http://") || url.value.starts_with("https://")) {
            return Err(self.ctx.err(
                &url.referenced,
                format!(
                    "link `{}` is not a web address; links start with `http://` or `https://`",
                    url.value
                ),
            ));
        }
        Ok(Link {
            title: l.value.title.clone(),
            url: url.value.clone(),
            when: self.condition(&l.value.when)?,
        })
    }
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
