//! The built-in plans, embedded in the binary: `demo` (the default), `thinkube` and
//! `k0rdent-azure`. Their files are written into `<environment>/plans/<name>/` before
//! a deployment runs them (Ansible needs playbooks on disk).

use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};
use crate::plan::{self, DiskFiles, Plan, PlanFiles};
use crate::state::fsops::FileOps;

/// A plan shipped inside the binary: its files, `plan.yaml` first.
#[derive(Debug)]
pub struct BuiltinPlan {
    pub name: &'static str,
    pub files: &'static [(&'static str, &'static str)],
}

macro_rules! embed {
    ($dir:literal: $($file:literal),* $(,)?) => {
        &[$(($file, include_str!(concat!("../../plans/", $dir, "/", $file)))),*]
    };
}

pub(crate) const BUILTINS: &[BuiltinPlan] = &[
    BuiltinPlan {
        name: "demo",
        files: embed!("demo":
            "plan.yaml",
            "playbooks/vars.yaml",
            "playbooks/10_folders.yaml",
            "playbooks/20_config.yaml",
            "playbooks/30_site.yaml",
            "playbooks/40_install_server.yaml",
            "playbooks/50_start_server.yaml",
            "playbooks/60_check_http.yaml",
            "playbooks/70_check_content.yaml",
            "playbooks/80_report.yaml",
            "playbooks/templates/server.env.j2",
            "playbooks/templates/index.html.j2",
            "playbooks/files/demo-server.sh",
        ),
    },
    BuiltinPlan {
        name: "thinkube",
        files: embed!("thinkube": "plan.yaml"),
    },
    BuiltinPlan {
        name: "k0rdent-azure",
        files: embed!("k0rdent-azure": "plan.yaml"),
    },
];

/// The plan used when none is named.
pub(crate) const DEFAULT_PLAN: &str = "demo";

pub fn find(name: &str) -> Option<&'static BuiltinPlan> {
    BUILTINS.iter().find(|b| b.name == name)
}

pub fn names() -> Vec<&'static str> {
    BUILTINS.iter().map(|b| b.name).collect()
}

impl PlanFiles for BuiltinPlan {
    fn exists(&self, relative: &Path) -> bool {
        self.files.iter().any(|(f, _)| Path::new(f) == relative)
    }
}

impl BuiltinPlan {
    fn text(&self) -> &'static str {
        self.files[0].1
    }

    /// Writes the plan's files under `dir` (0600 files, 0700 folders), replacing
    /// any that differ. Returns the folder.
    pub(crate) fn materialize(&self, dir: &Path, fs: &dyn FileOps) -> Result<PathBuf> {
        for (rel, content) in self.files {
            let path = dir.join(rel);
            if fs.read(&path).ok().flatten().as_deref() == Some(content.as_bytes()) {
                continue;
            }
            if let Some(parent) = path.parent() {
                fs.create_dir_all(parent)
                    .map_err(|e| EngineError::io("create the folder", parent, e))?;
            }
            fs.replace(&path, content.as_bytes())
                .map_err(|e| EngineError::io("write", &path, e))?;
        }
        Ok(dir.to_path_buf())
    }
}

/// A plan as named on the command line: a built-in name or a path.
#[derive(Debug, Clone)]
pub enum PlanRef {
    Builtin(&'static BuiltinPlan),
    File(PathBuf),
}

impl PlanRef {
    /// `--plan PATH|NAME`: an existing file wins over a built-in of the same name;
    /// with nothing given, the default plan.
    pub fn parse(spec: Option<&str>) -> Result<Self> {
        let spec = spec.unwrap_or(DEFAULT_PLAN);
        let path = Path::new(spec);
        // Anything there but a folder is taken as the plan file the user meant (a
        // named pipe is then refused by name, not mistaken for a built-in's name).
        if path.exists() && !path.is_dir() {
            // Absolute once, here: the deployment records it, and `resume` or
            // `retry` from another folder must find the same plan.
            let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
            return Ok(Self::File(path));
        }
        if let Some(b) = find(spec) {
            return Ok(Self::Builtin(b));
        }
        Err(EngineError::Usage(format!(
            "there is no plan file `{spec}` and no built-in plan of that name; built-in plans: {}",
            names().join(", ")
        )))
    }

    /// Loads and validates the plan. Built-in plans resolve their files against
    /// `plans_dir/<name>` (where `materialize` puts them).
    pub fn load(&self, plans_dir: &Path) -> Result<Plan> {
        match self {
            PlanRef::Builtin(b) => {
                let base = plans_dir.join(b.name);
                Ok(plan::parse(
                    b.text(),
                    Path::new(&format!("{}/plan.yaml", b.name)),
                    b.name,
                    &base,
                    *b,
                )?)
            }
            PlanRef::File(path) => {
                let bytes = crate::state::fsops::read_regular(path, plan::MAX_PLAN_BYTES as u64)
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => {
                            EngineError::Usage(format!(
                                "the plan {} cannot be used: {e} (plans are at most {} bytes)",
                                path.display(),
                                plan::MAX_PLAN_BYTES
                            ))
                        }
                        _ => EngineError::io("read the plan", path, e),
                    })?
                    .ok_or_else(|| {
                        EngineError::io(
                            "read the plan",
                            path,
                            std::io::Error::from(std::io::ErrorKind::NotFound),
                        )
                    })?;
                let text = String::from_utf8(bytes).map_err(|_| {
                    EngineError::Usage(format!(
                        "the plan {} is not UTF-8 text; a plan is a YAML file",
                        path.display()
                    ))
                })?;
                let base = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let base = base
                    .canonicalize()
                    .map_err(|e| EngineError::io("resolve the folder of", path, e))?;
                Ok(plan::parse(
                    &text,
                    path,
                    &path.display().to_string(),
                    &base,
                    &DiskFiles(&base),
                )?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn every_builtin_plan_is_valid() {
        for b in BUILTINS {
            let plan = PlanRef::Builtin(b)
                .load(Path::new("/nowhere"))
                .unwrap_or_else(|e| panic!("{}: {e}", b.name));
            assert_eq!(plan.id, b.name);
        }
    }

    #[test]
    fn the_demo_plan_has_three_phases_and_eight_steps_one_behind_a_flag() {
        let plan = PlanRef::parse(None).unwrap().load(Path::new("/p")).unwrap();
        assert_eq!(plan.id, "demo");
        assert!(plan.phases.len() >= 3);
        assert!(plan.steps().count() >= 8);
        let off = plan
            .choose(
                &BTreeMap::from([("report".into(), false)]),
                &BTreeMap::new(),
            )
            .unwrap();
        let planned = plan.planned("d", &off, BTreeMap::new()).unwrap();
        assert_eq!(
            planned
                .steps
                .iter()
                .filter(|s| s.skip_reason.is_some())
                .count(),
            1
        );
    }

    /// The ids of the steps `plan` skips with these flags and variables.
    fn skipped(plan: &Plan, flags: &[(&str, bool)], vars: &[(&str, &str)]) -> Vec<String> {
        let flags = flags.iter().map(|(f, on)| (f.to_string(), *on)).collect();
        let vars = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let choices = plan.choose(&flags, &vars).unwrap();
        let planned = plan.planned("d", &choices, BTreeMap::new()).unwrap();
        planned
            .steps
            .into_iter()
            .filter(|s| s.skip_reason.is_some())
            .map(|s| s.id)
            .collect()
    }

    #[test]
    fn optional_thinkube_and_k0rdent_steps_follow_their_flags() {
        let plan = find("thinkube")
            .map(|b| PlanRef::Builtin(b).load(Path::new("/p")).unwrap())
            .unwrap();
        let skipped_with = |flags: &[(&str, bool)]| skipped(&plan, flags, &[]);
        // ZeroTier, one server, no DGX Spark: what the defaults say.
        assert_eq!(
            skipped_with(&[]),
            [
                "dgx-spark-tune",
                "tailscale-setup",
                "k8s-join-workers",
                "tailscale-operator"
            ]
        );
        assert_eq!(
            skipped_with(&[("tailscale", true), ("workers", true), ("dgx_spark", true)]),
            ["zerotier-setup"]
        );
        // A migrated state of the earlier installer gets the same phase titles.
        for phase in &plan.phases {
            assert!(
                crate::state::migrate::THINKUBE_PHASES
                    .contains(&(phase.id.as_str(), phase.title.as_str())),
                "{}",
                phase.id
            );
        }
        let upstream = plan.upstream.as_ref().unwrap();
        assert_eq!(upstream.name(), "thinkube");
        assert_eq!(upstream.commit.len(), 40);
        let k = find("k0rdent-azure")
            .map(|b| PlanRef::Builtin(b).load(Path::new("/p")).unwrap())
            .unwrap();
        // The k0rdent import names steps and phases as this plan does.
        let ids: Vec<(String, String)> = k
            .steps()
            .map(|(p, s)| (s.id.clone(), p.id.clone()))
            .collect();
        let imported: Vec<(String, String)> = crate::state::migrate::K0RDENT_STEPS
            .iter()
            .map(|(s, p, _)| (s.to_string(), p.to_string()))
            .collect();
        assert_eq!(ids, imported);
        // The Azure CSI driver comes with KOF (its prerequisite in the real
        // deploy-k0rdent.sh), not with the child clusters.
        let k_skipped = |flags: &[(&str, bool)]| skipped(&k, flags, &[("k0rdent_root", "/k")]);
        assert_eq!(
            k_skipped(&[("azure_children", true), ("kof", false)]),
            [
                "install_azure_csi",
                "install_kof_mothership",
                "install_kof_regional"
            ]
        );
        assert_eq!(
            k_skipped(&[("azure_children", false), ("kof", true)]),
            ["setup_azure_children"]
        );
    }

    #[test]
    fn materialize_writes_the_files_once() {
        let dir = tempfile::tempdir().unwrap();
        let demo = find("demo").unwrap();
        demo.materialize(dir.path(), &crate::state::fsops::RealFs)
            .unwrap();
        let plan_file = dir.path().join("plan.yaml");
        assert_eq!(std::fs::read_to_string(&plan_file).unwrap(), demo.text());
        let before = std::fs::metadata(&plan_file).unwrap().modified().unwrap();
        demo.materialize(dir.path(), &crate::state::fsops::RealFs)
            .unwrap();
        assert_eq!(
            std::fs::metadata(&plan_file).unwrap().modified().unwrap(),
            before
        );
    }
}
