//! Plans: YAML files of ordered phases and steps, parsed and validated into a
//! [`Plan`] before anything runs.
//!
//! An invalid plan (unknown keys, duplicate ids, a missing playbook, an unknown flag,
//! a bad gate, a path that leaves the plan's folder) is a [`PlanError`] naming the
//! file, line and column, and what to change. `docs/plans.md` describes the format.

pub mod builtin;
pub mod outline;
mod parse;

pub use parse::parse;
pub(crate) use parse::{substitute, var_refs};

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
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
