//! Each credential kind is built as a server or CI builds it, in a process where
//! nothing has made an HTTP client yet. `client_secret` and `managed_identity`
//! panicked there ("No rustls crypto provider is configured"): they build their HTTP
//! client when they are made, before the ARM client installed the TLS provider.
//! No token is asked for: nothing leaves the machine.

use std::process::Command;

/// Runs `credential(kind)` in a fresh process (this binary, one test), with `env`.
fn build_in_a_fresh_process(kind: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "child_builds_the_credential",
        "--exact",
        "--ignored",
        "--nocapture",
    ])
    .env("THINKUBE_CREDENTIAL_KIND", kind)
    .env_remove("AZURE_TENANT_ID")
    .env_remove("AZURE_CLIENT_ID")
    .env_remove("AZURE_CLIENT_SECRET");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && said.contains("1 passed"), said)
}

#[test]
fn client_secret_is_built_without_a_panic() {
    let (ok, said) = build_in_a_fresh_process(
        "client_secret",
        &[
            ("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
            ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001"),
            ("AZURE_CLIENT_SECRET", "not-a-real-secret"),
        ],
    );
    assert!(ok, "{said}");
    assert!(said.contains("built: client_secret"), "{said}");
    assert!(
        !said.contains("not-a-real-secret"),
        "the secret was printed: {said}"
    );
}

#[test]
fn managed_identity_is_built_without_a_panic() {
    let (ok, said) = build_in_a_fresh_process("managed_identity", &[]);
    assert!(ok, "{said}");
    assert!(said.contains("built: managed_identity"), "{said}");
}

#[test]
fn client_secret_without_its_variables_names_the_first_missing_one() {
    let (ok, said) = build_in_a_fresh_process(
        "client_secret",
        &[("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47")],
    );
    assert!(ok, "{said}");
    assert!(
        said.contains("not built: could not get an Azure token: AZURE_CLIENT_ID is not set"),
        "{said}"
    );
}

/// Runs only as the child of the tests above.
#[test]
#[ignore = "run by the tests above, one fresh process each"]
fn child_builds_the_credential() {
    let Ok(kind) = std::env::var("THINKUBE_CREDENTIAL_KIND") else {
        return;
    };
    let settings = thinkube_azure::Settings {
        credential: kind.clone(),
        cloud: std::env::var("THINKUBE_CLOUD").ok(),
        client_id: std::env::var("THINKUBE_USER_ASSIGNED").ok(),
        tenant_id: std::env::var("THINKUBE_TENANT").ok(),
        subscription: Some("0b1c2d3e-0000-4000-8000-00000000abcd".into()),
        ..Default::default()
    };
    match thinkube_azure::credential_for(&settings) {
        Ok(_) => println!("built: {kind}"),
        Err(e) => println!("not built: {e}"),
    }
}

#[test]
fn each_cloud_has_its_resource_manager_scope_and_authority() {
    use thinkube_azure::{Cloud, Settings};
    let cloud = |name: Option<&str>| {
        Settings {
            cloud: name.map(str::to_string),
            ..Default::default()
        }
        .cloud()
        .unwrap()
    };
    assert_eq!(
        cloud(None),
        Cloud {
            endpoint: "https://management.azure.com".into(),
            scope: "https://management.azure.com/.default".into(),
            authority_host: "https://login.microsoftonline.com".into(),
        }
    );
    assert_eq!(
        cloud(Some("usgovernment")),
        Cloud {
            endpoint: "https://management.usgovcloudapi.net".into(),
            scope: "https://management.usgovcloudapi.net/.default".into(),
            authority_host: "https://login.microsoftonline.us".into(),
        }
    );
    assert_eq!(
        cloud(Some("china")),
        Cloud {
            endpoint: "https://management.chinacloudapi.cn".into(),
            scope: "https://management.chinacloudapi.cn/.default".into(),
            authority_host: "https://login.chinacloudapi.cn".into(),
        }
    );
    // An address of one's own (a private link) keeps the cloud's token audience.
    let private = Settings {
        cloud: Some("usgovernment".into()),
        endpoint: Some("https://arm.private.example/".into()),
        authority_host: Some("https://login.private.example/".into()),
        ..Default::default()
    }
    .cloud()
    .unwrap();
    assert_eq!(private.endpoint, "https://arm.private.example");
    assert_eq!(
        private.scope,
        "https://management.usgovcloudapi.net/.default"
    );
    assert_eq!(private.authority_host, "https://login.private.example");
    let e = Settings {
        cloud: Some("mars".into()),
        ..Default::default()
    }
    .cloud()
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("`mars` is not one of public, usgovernment, china"),
        "{e}"
    );
}

#[test]
fn the_other_kinds_and_a_sovereign_cloud_are_built_without_a_panic() {
    for (kind, env) in [
        ("cli", vec![]),
        (
            "workload_identity",
            vec![("AZURE_FEDERATED_TOKEN_FILE", "/nonexistent/token")],
        ),
        (
            "managed_identity",
            vec![(
                "THINKUBE_USER_ASSIGNED",
                "00000000-0000-0000-0000-000000000002",
            )],
        ),
        (
            "client_secret",
            vec![
                ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001"),
                ("AZURE_CLIENT_SECRET", "not-a-real-secret"),
            ],
        ),
    ] {
        let mut env = env;
        env.push(("THINKUBE_CLOUD", "usgovernment"));
        env.push(("THINKUBE_TENANT", "72f988bf-86f1-41af-91ab-2d7cd011db47"));
        let (ok, said) = build_in_a_fresh_process(kind, &env);
        assert!(ok, "{kind}: {said}");
        assert!(
            said.contains("built: ") || said.contains("not built: "),
            "{said}"
        );
    }
}
