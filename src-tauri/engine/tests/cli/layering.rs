//! The engine's layering, as `docs/architecture.md` draws it: the engine has no Tauri
//! in its dependency tree, and each room uses only the rooms below it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Packages that mean a window system: none may be in the engine's dependency tree.
const WINDOW_PACKAGES: &[&str] = &["tauri", "wry", "tao", "webkit2gtk", "gtk", "muda"];

/// A package's dependencies as `Cargo.lock` records them (names only).
fn lock_graph(lock: &str) -> BTreeMap<String, Vec<String>> {
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for block in lock.split("[[package]]").skip(1) {
        let Some(name) = block
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
        else {
            continue;
        };
        let deps = block
            .split_once("dependencies = [")
            .map(|(_, rest)| rest.split(']').next().unwrap_or_default())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().trim_end_matches(',').strip_prefix('"'))
            .map(|d| {
                d.trim_end_matches('"')
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        graph
            .entry(name.to_string())
            .or_default()
            .extend::<Vec<String>>(deps);
    }
    graph
}

fn reachable(graph: &BTreeMap<String, Vec<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(name) = todo.pop() {
        if seen.insert(name.clone()) {
            todo.extend(graph.get(&name).into_iter().flatten().cloned());
        }
    }
    seen
}

#[test]
fn the_engine_has_no_window_system_in_its_dependency_tree() {
    let lock_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
    let lock = std::fs::read_to_string(&lock_path).expect("the workspace's Cargo.lock");
    let graph = lock_graph(&lock);
    // The check must be able to fail: the app's tree has them.
    let app = reachable(&graph, "thinkube-installer");
    assert!(
        app.contains("tauri") && app.contains("wry"),
        "Cargo.lock was not read: {app:?}"
    );

    let engine = reachable(&graph, "thinkube-engine");
    assert!(
        engine.contains("serde"),
        "Cargo.lock was not read: {engine:?}"
    );
    let window: Vec<_> = engine
        .iter()
        .filter(|p| {
            WINDOW_PACKAGES
                .iter()
                .any(|w| p == w || p.starts_with(&format!("{w}-")))
        })
        .collect();
    assert!(window.is_empty(), "the engine depends on {window:?}");
}

/// The room of a source file, as its path under `src/` names it.
fn room(file: &Path) -> String {
    let mut parts = file.iter().map(|p| p.to_string_lossy().into_owned());
    let first = parts.next().unwrap_or_default();
    first.trim_end_matches(".rs").to_string()
}

/// The rooms from the bottom up, as `docs/architecture.md` draws them: a room may use
/// the rooms of the layers below its own, and those of its own layer when the layer
/// says so (`true`). `error` names every room's error type and `lib`/`main` assemble
/// the crate: they are not checked.
const LAYERS: &[(&[&str], bool)] = &[
    (
        &["error", "paths", "timestamp", "retry", "secrets", "yaml"],
        true,
    ),
    (&["state"], false),
    (&["plan"], false),
    (&["config", "facts"], true),
    (&["run", "report"], false),
    (&["cli"], false),
];

/// What `room` may use besides itself, or `None` when it is not checked.
fn allowed(room: &str) -> Option<Vec<&'static str>> {
    if matches!(room, "error" | "lib" | "main") {
        return None;
    }
    let layer = LAYERS.iter().position(|(rooms, _)| rooms.contains(&room))?;
    let mut may: Vec<&str> = LAYERS[..layer]
        .iter()
        .flat_map(|(rooms, _)| rooms.iter().copied())
        .collect();
    if LAYERS[layer].1 {
        may.extend(LAYERS[layer].0);
    }
    Some(may)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("read src/").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::ROOM` a file names, with its line number.
fn uses(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((n + 1, name));
            }
            rest = after;
        }
    }
    found
}

fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    sources(src, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src).expect("under src/");
        let own = room(relative);
        let Some(may) = allowed(&own) else {
            assert!(
                matches!(own.as_str(), "error" | "lib" | "main"),
                "{} is in no layer: add its room to LAYERS",
                relative.display()
            );
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for (line, used) in uses(&text) {
            if used != own && !may.contains(&used.as_str()) {
                bad.push(format!("{}:{line}: {own} uses {used}", relative.display()));
            }
        }
    }
    bad
}

#[test]
fn each_room_uses_only_the_rooms_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = violations(&src);
    assert!(
        bad.is_empty(),
        "the layering of docs/architecture.md is broken:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_layering_check_finds_a_room_that_uses_one_above_it() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::create_dir_all(dir.path().join("state")).expect("create state/");
    std::fs::write(
        dir.path().join("state/ops.rs"),
        "use crate::state::model;\nfn f() { crate::run::runner::x() }\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("paths.rs"),
        "use crate::error::EngineError;\n",
    )
    .expect("write");
    assert_eq!(violations(dir.path()), ["state/ops.rs:2: state uses run"]);
}
