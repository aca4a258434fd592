//! `plan show`: a plan's phases and steps, each marked applicable or not and why,
//! with its flags and variables as chosen. The CLI prints it; the app's wizard and
//! Deploy screen show it.

use serde::Serialize;

use crate::plan::{Choices, Plan};

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize)]
pub struct PlanOutline {
    pub id: String,
    pub title: String,
    pub source: String,
    pub digest: String,
    /// The project and commit whose playbooks the plan runs, when it runs another's.
    pub upstream: Option<crate::plan::Upstream>,
    pub flags: Vec<FlagOutline>,
    pub vars: Vec<VarOutline>,
    pub phases: Vec<PhaseOutline>,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize)]
pub struct FlagOutline {
    pub name: String,
    pub value: Option<bool>,
    pub default: bool,
    /// What the flag enables.
    pub description: Option<String>,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize)]
pub struct VarOutline {
    pub name: String,
    pub value: Option<String>,
    pub default: Option<String>,
    pub description: Option<String>,
    /// It has no default and a step that applies with these flags uses it: a run
    /// needs a value for it.
    pub required: bool,
    /// Its name looks like a secret's: never saved, given for each run.
    pub secret: bool,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize)]
pub struct PhaseOutline {
    pub id: String,
    pub title: String,
    /// The checks made before the phase starts, as the plan declares them.
    #[cfg_attr(feature = "ts", ts(type = "Array<unknown>"))]
    pub gates: Vec<serde_json::Value>,
    pub steps: Vec<StepOutline>,
}

#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize)]
pub struct StepOutline {
    pub id: String,
    pub title: String,
    /// What it runs, e.g. `playbook playbooks/10_folders.yaml`.
    pub runs: String,
    /// The playbook as the plan writes it (relative to the plan's folder, or to the
    /// upstream checkout), for a playbook step.
    pub playbook: Option<String>,
    pub applicable: bool,
    /// Why it does not apply, when it does not.
    pub reason: Option<String>,
    pub requires_restart: bool,
    pub retries: u32,
}

/// The plan as `choices` make it.
pub fn outline(plan: &Plan, choices: &Choices) -> PlanOutline {
    PlanOutline {
        id: plan.id.clone(),
        title: plan.title.clone(),
        source: plan.source.clone(),
        digest: plan.digest.clone(),
        upstream: plan.upstream.clone(),
        flags: plan
            .flags
            .iter()
            .map(|f| FlagOutline {
                name: f.name.clone(),
                value: choices.flags.get(&f.name).copied(),
                default: f.default,
                description: f.description.clone(),
            })
            .collect(),
        vars: plan
            .vars
            .iter()
            .map(|v| VarOutline {
                name: v.name.clone(),
                value: choices.vars.get(&v.name).cloned(),
                default: v.default.clone(),
                description: v.description.clone(),
                required: v.default.is_none() && used_by_applicable_step(plan, choices, &v.name),
                secret: crate::secrets::is_secret_key(&v.name),
            })
            .collect(),
        phases: plan
            .phases
            .iter()
            .map(|p| PhaseOutline {
                id: p.id.clone(),
                title: p.title.clone(),
                gates: p
                    .gates
                    .iter()
                    .filter_map(|g| serde_json::to_value(g).ok())
                    .collect(),
                steps: p
                    .steps
                    .iter()
                    .map(|s| {
                        let reason = plan.skip_reason(p, s, &choices.flags);
                        StepOutline {
                            id: s.id.clone(),
                            title: s.title.clone(),
                            runs: crate::plan::describe(&s.action),
                            playbook: match &s.action {
                                crate::plan::Action::Playbook { path, .. } => Some(path.clone()),
                                crate::plan::Action::Command { .. } => None,
                            },
                            applicable: reason.is_none(),
                            reason,
                            requires_restart: s.requires_restart,
                            retries: s.retries,
                        }
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Whether a step that applies with `choices` refers to `${name}`.
fn used_by_applicable_step(plan: &Plan, choices: &Choices, name: &str) -> bool {
    plan.steps()
        .filter(|(phase, step)| plan.skip_reason(phase, step, &choices.flags).is_none())
        .any(|(_, step)| {
            let texts: Vec<&String> = match &step.action {
                crate::plan::Action::Playbook { path, vars } => {
                    std::iter::once(path).chain(vars.values()).collect()
                }
                crate::plan::Action::Command { argv, env, cwd } => {
                    argv.iter().chain(env.values()).chain(cwd.iter()).collect()
                }
            };
            texts
                .iter()
                .any(|t| crate::plan::var_refs(t).is_ok_and(|refs| refs.iter().any(|r| r == name)))
        })
}

/// The human view of `plan show`.
pub(crate) fn render(v: &PlanOutline) -> String {
    let mut out = format!("Plan {} ({}): {}\n", v.id, v.source, v.title);
    if let Some(u) = &v.upstream {
        out.push_str(&format!(
            "  playbooks from {} at {}\n",
            u.repository, u.commit
        ));
    }
    for f in &v.flags {
        let value = f.value.map_or("null".to_string(), |b| b.to_string());
        out.push_str(&format!(
            "  flag {} = {value}  {}\n",
            f.name,
            f.description.as_deref().unwrap_or("")
        ));
    }
    for var in &v.vars {
        out.push_str(&format!(
            "  var  {} = {}  {}\n",
            var.name,
            var.value.as_deref().unwrap_or("(not set)"),
            var.description.as_deref().unwrap_or("")
        ));
    }
    for p in &v.phases {
        out.push_str(&format!("\n{} ({})\n", p.title, p.id));
        for s in &p.steps {
            let mark = if s.applicable { "●" } else { "–" };
            let why = s
                .reason
                .as_deref()
                .map(|r| format!("  [not applicable: {r}]"))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {mark} {}: {}  ({}){why}\n",
                s.id, s.title, s.runs
            ));
        }
    }
    out
}
