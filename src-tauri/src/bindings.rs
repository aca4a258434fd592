//! The UI's TypeScript types (`ui/src/bindings/`) are generated from the Rust types
//! the page's commands take and return. This test generates them afresh into a
//! temporary folder and compares: a Rust change without regenerated bindings fails
//! here, naming the files. `UPDATE_BINDINGS=1 cargo test -p thinkube-installer
//! bindings` writes them (and removes the ones no command uses any more), then fails
//! once so that the change is looked at and committed.
//!
//! (ts-rs's own `export` tests write to `target/ts-rs-auto/`, set in
//! `.cargo/config.toml`, so no test run can rewrite the committed files behind this
//! comparison's back.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ts_rs::{Config, TS};

/// Everything the page gets from or gives to a command or a channel.
fn export_all(cfg: &Config) -> Result<(), ts_rs::ExportError> {
    use thinkube_engine::config::{FieldProblem, InstallerConfig};
    use thinkube_engine::facts::FactView;
    use thinkube_engine::facts::validate::Validation;
    use thinkube_engine::plan::outline::PlanOutline;
    use thinkube_engine::report::history::{HistoryListing, RunDiff, StepTimings};
    use thinkube_engine::report::log::{LogPage, SavedLog};
    use thinkube_engine::state::model::RunRecord;

    crate::launch::LaunchInfo::export_all(cfg)?;
    crate::snapshot::Snapshot::export_all(cfg)?;
    crate::commands::ReadinessAttempt::export_all(cfg)?;
    crate::commands::RunRequest::export_all(cfg)?;
    crate::commands::RunTokens::export_all(cfg)?;
    thinkube_engine::run::requirements::Requirement::export_all(cfg)?;
    thinkube_engine::run::source::SourceView::export_all(cfg)?;
    thinkube_engine::run::source::Fetched::export_all(cfg)?;
    thinkube_engine::run::plan_check::CheckReport::export_all(cfg)?;
    crate::commands::AcceptedKey::export_all(cfg)?;
    thinkube_engine::facts::host_keys::HostKeyView::export_all(cfg)?;
    thinkube_engine::facts::host_keys::HostCheck::export_all(cfg)?;
    crate::commands::HostHardware::export_all(cfg)?;
    crate::worker::RunEvent::export_all(cfg)?;
    crate::error::AppError::export_all(cfg)?;
    InstallerConfig::export_all(cfg)?;
    FieldProblem::export_all(cfg)?;
    PlanOutline::export_all(cfg)?;
    thinkube_engine::report::plans::PlanChoice::export_all(cfg)?;
    thinkube_engine::report::completion::Completion::export_all(cfg)?;
    HistoryListing::export_all(cfg)?;
    RunRecord::export_all(cfg)?;
    RunDiff::export_all(cfg)?;
    FactView::export_all(cfg)?;
    Validation::export_all(cfg)?;
    crate::commands::FactsAnswer::export_all(cfg)?;
    crate::commands::WindowNotice::export_all(cfg)?;
    crate::commands::CloseChoice::export_all(cfg)?;
    LogPage::export_all(cfg)?;
    SavedLog::export_all(cfg)?;
    StepTimings::export_all(cfg)?;
    Ok(())
}

/// Every `.ts` file below `dir`, by its path relative to `dir`.
fn ts_files(dir: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "ts") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                out.insert(path.strip_prefix(root).unwrap_or(&path).to_path_buf(), text);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// What differs between the generated and the committed files, one line each.
fn differences(
    generated: &BTreeMap<PathBuf, String>,
    committed: &BTreeMap<PathBuf, String>,
) -> Vec<String> {
    let mut lines = Vec::new();
    for (path, text) in generated {
        match committed.get(path) {
            None => lines.push(format!("{} is missing", path.display())),
            Some(old) if old != text => lines.push(format!("{} is out of date", path.display())),
            Some(_) => {}
        }
    }
    for path in committed.keys().filter(|p| !generated.contains_key(*p)) {
        lines.push(format!(
            "{} is not generated from any command's type any more",
            path.display()
        ));
    }
    lines
}

#[test]
fn the_committed_bindings_are_what_the_rust_types_generate() {
    let committed_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/src/bindings");
    let fresh = tempfile::tempdir().expect("a temporary folder");
    export_all(&Config::new().with_out_dir(fresh.path())).expect("generate the bindings");
    let generated = ts_files(fresh.path());
    assert!(
        generated.len() > 20,
        "too few bindings generated: {:?}",
        generated.keys()
    );
    let diff = differences(&generated, &ts_files(&committed_dir));
    if diff.is_empty() {
        return;
    }
    if std::env::var_os("UPDATE_BINDINGS").is_some() {
        for (path, text) in &generated {
            let target = committed_dir.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).expect("create a bindings folder");
            }
            std::fs::write(&target, text).expect("write a binding");
        }
        for path in ts_files(&committed_dir)
            .keys()
            .filter(|p| !generated.contains_key(*p))
        {
            std::fs::remove_file(committed_dir.join(path)).expect("remove a stale binding");
        }
        panic!(
            "ui/src/bindings updated ({}): review with `git diff`, commit, and run again",
            diff.join("; ")
        );
    }
    panic!(
        "ui/src/bindings does not match the Rust types:\n  {}\nRun `UPDATE_BINDINGS=1 cargo test -p thinkube-installer bindings` and commit the result",
        diff.join("\n  ")
    );
}

#[test]
fn a_changed_missing_or_extra_binding_is_reported() {
    let file = |name: &str, text: &str| (PathBuf::from(name), text.to_string());
    let generated = BTreeMap::from([file("A.ts", "a"), file("B.ts", "b")]);
    let committed = BTreeMap::from([file("A.ts", "old"), file("C.ts", "c")]);
    assert_eq!(
        differences(&generated, &committed),
        [
            "A.ts is out of date",
            "B.ts is missing",
            "C.ts is not generated from any command's type any more"
        ]
    );
    assert!(differences(&generated, &generated).is_empty());
}
