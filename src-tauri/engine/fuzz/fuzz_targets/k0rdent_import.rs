//! The k0rdent-azure-setup reader on arbitrary text: an import or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thinkube_engine::state::migrate::import_k0rdent;
use thinkube_engine::timestamp::Timestamp;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let now = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
        let _ = import_k0rdent(text, "fuzz.yaml", now);
    }
});
