//! Every file the installer writes is 0600, every folder 0700.

use std::os::unix::fs::PermissionsExt;

use crate::common::*;
use crate::migration::walk;

#[test]
fn files_are_0600_and_folders_0700() {
    let home = Home::new();
    let store = home.store();
    run_deployment(
        &store,
        &[("a", "p"), ("b", "p")],
        Some("b"),
        &[],
        at("2020-01-01T00:00:00Z"),
    );
    run_deployment(
        &store,
        &[("a", "p"), ("b", "p")],
        None,
        &[],
        at("2020-01-02T00:00:00Z"),
    );
    assert_eq!(home.run(&["clean-state", "--yes"]).code, 0);
    assert_eq!(home.run(&["cleanup", "--older-than", "1"]).code, 0);
    let files = walk(home.path());
    assert!(files.len() >= 6, "{files:?}");
    for f in files {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {:o}", f.display(), mode);
        let dir = f.parent().unwrap();
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {:o}", dir.display(), mode);
    }
}
