//! The state loader (and through it the migration chain of the older formats) on
//! arbitrary bytes: it must return a state or an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use thinkube_engine::state::store::parse_state;
use thinkube_engine::timestamp::Timestamp;

fuzz_target!(|data: &[u8]| {
    let now = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
    let _ = parse_state(data, Path::new("fuzz.json"), now, uuid::Uuid::nil());
});
