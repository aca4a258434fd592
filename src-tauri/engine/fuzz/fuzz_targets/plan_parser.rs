//! The plan parser on arbitrary text: a plan or an error with a location, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use thinkube_engine::plan::{self, PlanFiles};

struct NoFiles;
impl PlanFiles for NoFiles {
    fn exists(&self, _: &Path) -> bool {
        true
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = plan::parse(text, Path::new("fuzz.yaml"), "fuzz", Path::new("/plans"), &NoFiles);
    }
});
