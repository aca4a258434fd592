//! The JSON Schema of the state file, generated from the model (`docs/deployment-state.schema.json`).

use crate::state::model::StateFile;

/// The schema as pretty JSON with a trailing newline, as committed in `docs/`.
pub fn state_schema_json() -> String {
    let schema = schemars::schema_for!(StateFile);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
