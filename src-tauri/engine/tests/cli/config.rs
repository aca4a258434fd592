//! The wizard's configuration as the app saves it (`config::save`), and the app's
//! restore from its browser copy (`ops::recover` with a document): what is written,
//! and that bad input, a held lock or a bad copy write nothing.

use std::os::unix::fs::PermissionsExt;

use thinkube_engine::EngineError;
use thinkube_engine::config::{self, Host, InstallerConfig, SshAuth, TargetKind};
use thinkube_engine::state::lock::LockWait;
use thinkube_engine::state::ops::{self, RecoverSource};
use thinkube_engine::timestamp::Timestamp;

use crate::common::{Home, one_completed_step};

fn servers() -> InstallerConfig {
    InstallerConfig {
        target: TargetKind::Ssh,
        hosts: vec![Host {
            name: "node1".into(),
            address: "10.0.0.11".into(),
            port: Some(2222),
            ..Default::default()
        }],
        ssh_user: "deployer".into(),
        ssh_auth: SshAuth::Password,
        plan: "demo".into(),
        ..Default::default()
    }
}

#[test]
fn saving_writes_the_configuration_and_its_inventory_privately_and_loads_back() {
    let home = Home::new();
    let store = home.store();
    config::save(&store, &servers(), Timestamp::now()).unwrap();
    assert_eq!(config::load(store.layout()).unwrap(), Some(servers()));
    let inventory = std::fs::read_to_string(home.path().join("inventory.yaml")).unwrap();
    assert!(inventory.contains("ansible_port: 2222"), "{inventory}");
    assert!(inventory.contains("THINKUBE_SSH_PASSWORD"), "{inventory}");
    for f in ["installer-config.json", "inventory.yaml"] {
        let mode = std::fs::metadata(home.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    // The inventory it wrote is one the deploy accepts.
    config::check_inventory(&home.path().join("inventory.yaml")).unwrap();
}

#[test]
fn an_invalid_configuration_or_a_held_lock_writes_nothing() {
    let home = Home::new();
    let store = home.store();
    let mut bad = servers();
    bad.hosts[0].address = "10.0.0.300".into();
    let e = config::save(&store, &bad, Timestamp::now()).unwrap_err();
    assert!(
        e.to_string().contains("hosts[0].address") && e.exit_code() == 2,
        "{e}"
    );
    assert!(!home.path().join("installer-config.json").exists());
    assert!(!home.path().join("inventory.yaml").exists());

    // While a deployment holds the environment, its inventory does not change.
    let _held = store
        .lock("deploy", LockWait::NoWait, Timestamp::now())
        .unwrap();
    let other = home.store();
    let e = config::save(&other, &servers(), Timestamp::now()).unwrap_err();
    assert!(matches!(e, EngineError::Locked { .. }), "{e}");
    assert!(!home.path().join("installer-config.json").exists());
}

#[test]
fn a_damaged_configuration_is_named_with_what_to_do() {
    let home = Home::new();
    home.create();
    std::fs::write(home.path().join("installer-config.json"), "{\"target\": 3").unwrap();
    let e = config::load(&home.layout()).unwrap_err();
    assert!(
        e.to_string().contains("installer-config.json") && e.to_string().contains("wizard"),
        "{e}"
    );
    // A deploy refuses it before anything runs.
    let r = home.run(&["deploy"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!home.state_file().exists());
}

#[test]
fn the_window_copy_restores_a_missing_state_but_a_bad_copy_or_a_readable_state_is_refused() {
    let home = Home::new();
    one_completed_step(&home);
    let good = std::fs::read(home.state_file()).unwrap();
    let before: serde_json::Value = serde_json::from_slice(&good).unwrap();
    let store = home.store();
    let document = |bytes: &[u8]| RecoverSource::Document {
        bytes: bytes.to_vec(),
        origin: "the installer window's copy".into(),
    };
    // A readable state is never replaced by a copy.
    let e = ops::recover(&store, document(&good), LockWait::NoWait, Timestamp::now()).unwrap_err();
    assert!(e.to_string().contains("is readable"), "{e}");
    assert_eq!(std::fs::read(home.state_file()).unwrap(), good);

    std::fs::remove_file(home.state_file()).unwrap();
    // A damaged copy is refused and nothing is written.
    let e = ops::recover(
        &store,
        document(b"{\"schema_version\": 3, \"lin"),
        LockWait::NoWait,
        Timestamp::now(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("window's copy"), "{e}");
    assert!(!home.state_file().exists());

    // The copy restores it: same lineage, a serial that went forward.
    let r = ops::recover(&store, document(&good), LockWait::NoWait, Timestamp::now()).unwrap();
    let after = home.status_json();
    assert_eq!(after["lineage"], before["lineage"]);
    assert!(r.serial > before["serial"].as_u64().unwrap());
}
