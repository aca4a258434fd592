//! The plans a person can choose from: every built-in plan, and the plan files this
//! environment has used (the saved configuration's, the deployment's, the one the
//! window was launched with), each with its title, or why it cannot be used now.
//! The wizard's plan picker lists them; nothing here writes.

use std::path::Path;

use serde::Serialize;

use crate::paths::Layout;
use crate::plan::builtin::{self, PlanRef};
use crate::state::store::Store;
use crate::timestamp::Timestamp;

/// One plan to choose.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanChoice {
    /// What to put in the configuration's `plan`: a built-in name or a file's path.
    pub source: String,
    pub builtin: bool,
    /// The plan's id and title, when it could be read.
    pub id: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    /// Why the plan cannot be used now (a file moved, or no longer a valid plan).
    pub problem: Option<String>,
}

/// Every built-in plan, then each plan file in `also` (given first) and the ones the
/// saved configuration and the deployment name, once each, in that order.
pub fn choices(store: &Store, also: &[&str], now: Timestamp) -> Vec<PlanChoice> {
    let layout = store.layout();
    let plans_dir = layout.root.join("plans");
    let mut out: Vec<PlanChoice> = builtin::names()
        .into_iter()
        .map(|name| describe(name, true, &plans_dir))
        .collect();
    let mut files: Vec<String> = also.iter().map(|s| s.to_string()).collect();
    files.extend(configured_plan(layout));
    files.extend(deployment_plan(store, now));
    for file in files {
        if builtin::find(&file).is_some() && !Path::new(&file).is_file() {
            continue;
        }
        let source = std::path::absolute(&file)
            .map(|p| p.display().to_string())
            .unwrap_or(file);
        if out.iter().any(|c| c.source == source) {
            continue;
        }
        out.push(describe(&source, false, &plans_dir));
    }
    out
}

fn configured_plan(layout: &Layout) -> Option<String> {
    crate::config::load(layout).ok().flatten().map(|c| c.plan)
}

fn deployment_plan(store: &Store, now: Timestamp) -> Option<String> {
    let loaded = store.load(now).ok().flatten()?;
    loaded.state.deployment.plan_source
}

fn describe(source: &str, builtin: bool, plans_dir: &Path) -> PlanChoice {
    let loaded = if builtin {
        builtin::find(source)
            .ok_or_else(|| format!("no built-in plan `{source}`"))
            .and_then(|b| {
                PlanRef::Builtin(b)
                    .load(plans_dir)
                    .map_err(|e| e.to_string())
            })
    } else if !Path::new(source).is_file() {
        Err("the file is no longer there".to_string())
    } else {
        PlanRef::File(source.into())
            .load(plans_dir)
            .map_err(|e| e.to_string())
    };
    match loaded {
        Ok(plan) => PlanChoice {
            source: source.to_string(),
            builtin,
            id: Some(plan.id),
            title: Some(plan.title),
            description: plan.description,
            problem: None,
        },
        Err(problem) => PlanChoice {
            source: source.to_string(),
            builtin,
            id: None,
            title: None,
            description: None,
            problem: Some(problem),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::EnvName;
    use crate::state::lock::Identity;

    fn store(dir: &Path) -> Store {
        Store::new(
            Layout::new(dir.join("home"), EnvName::default_env()),
            Identity::new("test"),
        )
    }

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("tk-catalog-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn every_builtin_plan_is_listed_with_its_title() {
        let d = dir("builtins");
        let list = choices(&store(&d), &[], Timestamp::now());
        let names: Vec<&str> = list.iter().map(|c| c.source.as_str()).collect();
        assert_eq!(names, builtin::names());
        for c in &list {
            assert!(c.builtin);
            assert!(c.problem.is_none(), "{c:?}");
            assert!(c.title.as_deref().is_some_and(|t| !t.is_empty()), "{c:?}");
        }
        let demo = &list[0];
        assert_eq!(
            demo.title.as_deref(),
            Some("Demo deployment to this machine")
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn plan_files_used_here_follow_once_each_with_their_title_or_why_not() {
        let d = dir("files");
        let good = d.join("mine.yaml");
        std::fs::write(
            &good,
            "id: mine\ntitle: My plan\nphases:\n  - id: p\n    title: P\n    steps:\n      - id: s\n        title: S\n        command: [\"true\"]\n",
        )
        .unwrap();
        let broken = d.join("broken.yaml");
        std::fs::write(&broken, "id: [\n").unwrap();
        let gone = d.join("gone.yaml");
        let good_s = good.display().to_string();
        let list = choices(
            &store(&d),
            &[
                &good_s,
                &broken.display().to_string(),
                &gone.display().to_string(),
                &good_s,
                "demo",
            ],
            Timestamp::now(),
        );
        let files: Vec<&PlanChoice> = list.iter().filter(|c| !c.builtin).collect();
        assert_eq!(files.len(), 3, "{files:?}");
        assert_eq!(files[0].title.as_deref(), Some("My plan"));
        assert_eq!(files[0].id.as_deref(), Some("mine"));
        assert!(
            files[1]
                .problem
                .as_deref()
                .is_some_and(|p| p.contains("broken.yaml")),
            "{:?}",
            files[1]
        );
        assert_eq!(
            files[2].problem.as_deref(),
            Some("the file is no longer there")
        );
        assert_eq!(list.iter().filter(|c| c.source == "demo").count(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_saved_configurations_plan_file_is_listed() {
        let d = dir("config");
        let st = store(&d);
        let plan = d.join("saved.yaml");
        std::fs::write(
            &plan,
            "id: saved\ntitle: Saved plan\nphases:\n  - id: p\n    title: P\n    steps:\n      - id: s\n        title: S\n        command: [\"true\"]\n",
        )
        .unwrap();
        let config = crate::config::InstallerConfig {
            plan: plan.display().to_string(),
            ..Default::default()
        };
        crate::config::save(&st, &config, Timestamp::now()).unwrap();
        let list = choices(&st, &[], Timestamp::now());
        let last = list.last().unwrap();
        assert!(!last.builtin);
        assert_eq!(last.title.as_deref(), Some("Saved plan"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
