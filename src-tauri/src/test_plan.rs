//! For the app's tests: a one-phase plan of commands in a fresh folder, with a store
//! and the deploy arguments to run it.

use std::path::PathBuf;

use thinkube_engine::paths::{EnvName, Layout};
use thinkube_engine::run::deploy::DeployArgs;
use thinkube_engine::state::lock::Identity;
use thinkube_engine::state::model::RunKind;
use thinkube_engine::state::store::Store;

/// A fresh folder (emptied if a previous run left it) holding `plan.yaml` (plan
/// `title`, one phase of `steps`: id, title and the command as a YAML flow list) and
/// an installer home; the store of that home and the arguments to deploy the plan.
pub fn one_phase(
    name: &str,
    title: &str,
    steps: &[(String, String, String)],
) -> (PathBuf, Store, DeployArgs) {
    let dir = std::env::temp_dir().join(format!("thinkube-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a test folder");
    let body: String = steps
        .iter()
        .map(|(id, title, command)| {
            format!("      - id: {id}\n        title: {title}\n        command: {command}\n")
        })
        .collect();
    let plan = dir.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "id: {name}\ntitle: {title}\nphases:\n  - id: one\n    title: One\n    steps:\n{body}"
        ),
    )
    .expect("the plan written");
    let store = Store::new(
        Layout::new(dir.join("home"), EnvName::default_env()),
        Identity::new("test"),
    );
    let args = DeployArgs {
        plan: Some(plan.display().to_string()),
        ..DeployArgs::from_env(RunKind::Deploy, "test")
    };
    (dir, store, args)
}
