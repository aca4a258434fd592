//! The committed JSON Schema matches the model, and every state we write or ship as a
//! fixture validates against it.

use std::path::Path;

use crate::common::*;

fn schema_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deployment-state.schema.json")
}

#[test]
fn the_committed_schema_is_up_to_date() {
    let generated = thinkube_engine::state::schema::state_schema_json();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(schema_path(), &generated).unwrap();
    }
    let committed = std::fs::read_to_string(schema_path()).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/deployment-state.schema.json is out of date: run `UPDATE_SCHEMA=1 cargo test -p thinkube-engine --test cli schema` and commit it"
    );
}

#[test]
fn states_and_fixtures_validate_against_the_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(&thinkube_engine::state::schema::state_schema_json()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let mut states = Vec::new();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden");
    for name in ["thinkube-v2.v3.json", "thinkube-queue.v3.json"] {
        states.push((
            name.to_string(),
            serde_json::from_slice(&std::fs::read(golden.join(name)).unwrap()).unwrap(),
        ));
    }
    let home = Home::new();
    run_deployment(
        &home.store(),
        &[("a", "p"), ("b", "p")],
        Some("b"),
        &[],
        at("2026-01-01T00:00:00Z"),
    );
    states.push((
        "written".into(),
        serde_json::from_slice(&std::fs::read(home.state_file()).unwrap()).unwrap(),
    ));
    let imported = Home::new();
    let k0rdent = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/legacy/k0rdent-deployment-state.yaml");
    assert_eq!(
        imported
            .run(&["migrate", "--from", k0rdent.to_str().unwrap()])
            .code,
        0
    );
    states.push((
        "imported k0rdent".into(),
        serde_json::from_slice(&std::fs::read(imported.state_file()).unwrap()).unwrap(),
    ));
    for (name, state) in &states {
        let errors: Vec<String> = validator
            .iter_errors(state)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
    let bad = serde_json::json!({"schema_version": 3, "serial": "x"});
    assert!(
        !validator.is_valid(&bad),
        "the schema must reject a bad state"
    );
}
