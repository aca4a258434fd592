//! The built-in thinkube plan against the real repositories (`../shared/upstream/`:
//! thinkube's playbooks and the earlier thinkube installer, as git bundles): the plan
//! is the earlier installer's queue, `source` checks out the pinned commit, `plan
//! check` loads every playbook in the real Ansible with collections, and a
//! deployment refuses a checkout that is missing, moved or changed. Where the
//! bundles are not there, each test says it was skipped and why.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// The earlier installer's commit whose queue the plan follows.
const INSTALLER_COMMIT: &str = "25e44f0";
/// The fixture inventory, in the layout the earlier installer's generator writes.
const INVENTORY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/thinkube/inventory.yaml"
);

pub fn bundle(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("THINKUBE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let path = dir.join("upstream").join(format!("{name}.bundle"));
    if path.is_file() {
        return Some(path);
    }
    eprintln!(
        "skipped: {} is not here (CI has ../shared; set THINKUBE_SHARED to its folder)",
        path.display()
    );
    None
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "advice.detachedHead=false"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn clone(bundle: &Path, to: &Path) {
    let out = Command::new("git")
        .args(["clone", "--quiet"])
        .arg(bundle)
        .arg(to)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A step of the earlier installer's queue, read from its deploy page: the id,
/// phase, title, playbook, and the condition it is enqueued under (JavaScript).
#[derive(Debug, Clone)]
struct Queued {
    id: String,
    phase: String,
    title: String,
    playbook: String,
    condition: Option<String>,
}

/// The steps `plan show --json` marks applicable: (id, phase, title, playbook).
fn applicable_steps(outline: &serde_json::Value) -> Vec<(String, String, String, String)> {
    outline["phases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["steps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["applicable"].as_bool().unwrap())
                .map(move |s| {
                    (
                        s["id"].as_str().unwrap().to_string(),
                        p["id"].as_str().unwrap().to_string(),
                        s["title"].as_str().unwrap().to_string(),
                        s["playbook"].as_str().unwrap().to_string(),
                    )
                })
        })
        .collect()
}

/// The queue `buildQueue` of `frontend/src/pages/deploy.tsx` builds.
fn real_queue(installer: &Path) -> Vec<Queued> {
    let page = git(
        installer,
        &[
            "show",
            &format!("{INSTALLER_COMMIT}:frontend/src/pages/deploy.tsx"),
        ],
    );
    let start = page
        .find("const buildQueue")
        .expect("buildQueue in deploy.tsx");
    let end = page[start..]
        .find("return queue")
        .expect("end of buildQueue")
        + start;
    let quoted = |line: &str, key: &str| {
        line.strip_prefix(&format!("{key}: '"))
            .and_then(|r| r.strip_suffix("',").or_else(|| r.strip_suffix('\'')))
            .map(str::to_string)
    };
    let mut conditions: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut current: Option<Queued> = None;
    for line in page[start..end].lines().map(str::trim) {
        if let Some(c) = line
            .strip_prefix("if (")
            .and_then(|r| r.strip_suffix(") {"))
        {
            conditions.push(c.to_string());
        } else if line.starts_with("} else {") {
            let last = conditions.pop().expect("else after if");
            conditions.push(format!("!({last})"));
        } else if line == "}" {
            conditions.pop();
        } else if let Some(id) = quoted(line, "id") {
            current = Some(Queued {
                id,
                phase: String::new(),
                title: String::new(),
                playbook: String::new(),
                condition: conditions.last().cloned(),
            });
        } else if let Some(q) = current.as_mut() {
            if let Some(v) = quoted(line, "phase") {
                q.phase = v;
            } else if let Some(v) = quoted(line, "title") {
                q.title = v;
            } else if let Some(v) = quoted(line, "name") {
                q.playbook = v;
                out.extend(current.take());
            }
        }
    }
    out
}

/// Whether the earlier installer enqueues a step under these answers.
fn enqueued(condition: Option<&str>, tailscale: bool, workers: bool, dgx_spark: bool) -> bool {
    match condition {
        None => true,
        Some("hasDgxSpark") => dgx_spark,
        Some("hasWorkers") => workers,
        Some("overlayProvider === 'zerotier'") => !tailscale,
        Some("!(overlayProvider === 'zerotier')") => tailscale,
        Some("overlayProvider === 'tailscale'") => tailscale,
        Some(other) => {
            panic!("the earlier installer's queue has a condition the test does not know: {other}")
        }
    }
}

#[test]
fn the_thinkube_plan_is_the_earlier_installers_queue_for_every_answer() {
    let (Some(installer), Some(thinkube)) = (
        bundle("thinkube+thinkube-installer"),
        bundle("thinkube+thinkube"),
    ) else {
        return;
    };
    let home = Home::new();
    let dir = home.outside("installer");
    clone(&installer, &dir);
    let queue = real_queue(&dir);
    assert!(queue.len() >= 36, "{queue:?}");
    for tailscale in [false, true] {
        for workers in [false, true] {
            for dgx_spark in [false, true] {
                let r = home.run(&[
                    "plan",
                    "show",
                    "--plan",
                    "thinkube",
                    "--json",
                    "--flag",
                    &format!("tailscale={tailscale}"),
                    "--flag",
                    &format!("workers={workers}"),
                    "--flag",
                    &format!("dgx_spark={dgx_spark}"),
                ]);
                assert_eq!(r.code, 0, "{}", r.stderr);
                let shown: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
                let ours = applicable_steps(&shown);
                let theirs: Vec<(String, String, String, String)> = queue
                    .iter()
                    .filter(|q| enqueued(q.condition.as_deref(), tailscale, workers, dgx_spark))
                    .map(|q| {
                        (
                            q.id.clone(),
                            q.phase.clone(),
                            q.title.clone(),
                            q.playbook.clone(),
                        )
                    })
                    .collect();
                assert_eq!(
                    ours, theirs,
                    "tailscale={tailscale} workers={workers} dgx_spark={dgx_spark}"
                );
            }
        }
    }
    // The pin is a real thinkube commit, and it has every playbook of the queue.
    let r = home.run(&["plan", "show", "--plan", "thinkube", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        shown["upstream"]["repository"],
        "https://github.com/thinkube/thinkube"
    );
    let pin = shown["upstream"]["commit"].as_str().unwrap().to_string();
    let repo = home.outside("thinkube");
    clone(&thinkube, &repo);
    for q in &queue {
        git(&repo, &["cat-file", "-e", &format!("{pin}:{}", q.playbook)]);
    }
    // The phases carry the titles the earlier installer gave them.
    let titles: Vec<&str> = shown["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Initial Setup", "Kubernetes"]);
}

#[test]
fn source_checks_out_the_pin_and_plan_check_passes_against_it() {
    let Some(thinkube) = bundle("thinkube+thinkube") else {
        return;
    };
    let home = Home::new();
    let from = thinkube.display().to_string();
    let r = home.run(&["source", "--from", &from, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let fetched: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let dir = home.path().join("sources/thinkube");
    assert_eq!(fetched["dir"], dir.display().to_string());
    let pin = fetched["commit"].as_str().unwrap().to_string();
    assert_eq!(git(&dir, &["rev-parse", "HEAD"]).trim(), pin);
    assert_eq!(fetched["pinned"], serde_json::Value::Null);
    // Again: nothing to clone, same commit.
    let again = home.run(&["source", "--from", &from, "--json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&again.stdout).unwrap()["cloned"],
        false
    );
    for flags in [
        &[][..],
        &[
            "--flag",
            "tailscale=true",
            "--flag",
            "workers=true",
            "--flag",
            "dgx_spark=true",
        ][..],
    ] {
        let mut args = vec![
            "plan",
            "check",
            "--plan",
            "thinkube",
            "--inventory",
            INVENTORY,
            "--json",
        ];
        args.extend_from_slice(flags);
        let r = home.run(&args);
        assert_eq!(r.code, 0, "{flags:?}\n{}\n{}", r.stdout, r.stderr);
        let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(report["problems"], serde_json::json!([]));
        assert_eq!(report["commit"], pin.as_str());
        assert!(report["playbooks"].as_u64().unwrap() >= 33, "{report}");
    }
    // The checkout stays clean: the inventory the check used is not written into it,
    // and the check's own copy is gone once it ends.
    assert_eq!(git(&dir, &["status", "--porcelain"]), "");
    let left: Vec<String> = std::fs::read_dir(home.path().join("ansible"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("check"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn plan_check_names_every_missing_and_broken_playbook_and_each_missing_variable() {
    let Some(thinkube) = bundle("thinkube+thinkube") else {
        return;
    };
    let home = Home::new();
    let own = home.outside("my-thinkube");
    clone(&thinkube, &own);
    let r = home.run(&["plan", "show", "--plan", "thinkube", "--json"]);
    let pin = serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()["upstream"]["commit"]
        .as_str()
        .unwrap()
        .to_string();
    git(&own, &["checkout", "--quiet", "--detach", &pin]);
    let core = own.join("ansible/40_thinkube/core");
    std::fs::remove_file(core.join("harbor/00_install.yaml")).unwrap();
    std::fs::remove_file(core.join("mlflow/00_install.yaml")).unwrap();
    std::fs::write(
        core.join("gitea/00_install.yaml"),
        "- hosts: all\n  tasks: [\n",
    )
    .unwrap();
    // An inventory without the network the first playbook asserts.
    let inventory = home.outside("inventory.yaml");
    let text = std::fs::read_to_string(INVENTORY)
        .unwrap()
        .replace("    network_cidr: 192.168.1.0/24\n", "");
    std::fs::write(&inventory, text).unwrap();
    let root = format!("playbooks_root={}", own.display());
    let r = home.run(&[
        "plan",
        "check",
        "--plan",
        "thinkube",
        "--var",
        &root,
        "--inventory",
        inventory.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    let of = |step: &str| -> Vec<&serde_json::Value> {
        problems.iter().filter(|p| p["step"] == step).collect()
    };
    for step in ["harbor", "mlflow"] {
        let p = of(step);
        assert_eq!(p.len(), 1, "{report}");
        assert!(
            p[0]["message"].as_str().unwrap().contains("does not exist"),
            "{report}"
        );
    }
    let gitea = of("gitea");
    assert_eq!(gitea.len(), 1, "{report}");
    assert!(
        gitea[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("gitea/00_install.yaml")
    );
    assert!(gitea[0]["line"].is_u64(), "{report}");
    let env = of("env-setup");
    assert_eq!(env.len(), 1, "{report}");
    assert!(
        env[0]["message"]
            .as_str()
            .unwrap()
            .contains("`network_cidr`"),
        "{report}"
    );
    assert_eq!(env[0]["line"], 39);
    assert_eq!(problems.len(), 4, "{report}");
    assert!(r.stderr.contains("found 4 problems"), "{}", r.stderr);
}

#[test]
fn a_deployment_refuses_a_checkout_that_is_missing_moved_or_changed() {
    let Some(thinkube) = bundle("thinkube+thinkube") else {
        return;
    };
    let home = Home::new();
    let deploy = ["deploy", "--plan", "thinkube", "--inventory", INVENTORY];
    home.run(&deploy).expect(
        2,
        &["no checkout of it", "thinkube-deploy source", "Nothing ran"],
    );
    let from = thinkube.display().to_string();
    assert_eq!(home.run(&["source", "--from", &from]).code, 0);
    let dir = home.path().join("sources/thinkube");
    let pin = git(&dir, &["rev-parse", "HEAD"]).trim().to_string();
    // Another commit (the bundle's newest).
    git(
        &dir,
        &["fetch", "--quiet", &from, "+refs/heads/*:refs/remotes/b/*"],
    );
    let newest = git(&dir, &["rev-parse", "refs/remotes/b/main"])
        .trim()
        .to_string();
    assert_ne!(newest, pin);
    git(&dir, &["checkout", "--quiet", "--detach", &newest]);
    home.run(&deploy)
        .expect(2, &[&newest[..12], &pin[..12], "thinkube-deploy source"]);
    // `source` moves it back.
    assert_eq!(home.run(&["source", "--from", &from]).code, 0);
    assert_eq!(git(&dir, &["rev-parse", "HEAD"]).trim(), pin);
    // A local change is named, and `source` will not throw it away.
    let changed = dir.join("ansible/00_initial_setup/20_setup_env.yaml");
    let mut text = std::fs::read_to_string(&changed).unwrap();
    text.push_str("# mine\n");
    std::fs::write(&changed, &text).unwrap();
    home.run(&deploy).expect(
        2,
        &[
            "local changes",
            "ansible/00_initial_setup/20_setup_env.yaml",
        ],
    );
    home.run(&["source", "--from", &from])
        .expect(2, &["local changes", "nothing was changed"]);
    assert_eq!(std::fs::read_to_string(&changed).unwrap(), text);
    // Nothing ran in any of these.
    assert_eq!(home.status_json()["deployment"]["status"], "not_started");
}

/// A project of playbooks laid out as thinkube's: an ansible.cfg with `roles_path`,
/// group variables in `inventory/group_vars/`, playbooks under `ansible/`. One
/// commit; returns its id.
fn upstream_project(dir: &Path) -> String {
    let files = [
        (
            "ansible.cfg",
            "[defaults]\nhost_key_checking = False\ninventory = inventory/inventory.yaml\nroles_path = shared/roles\n",
        ),
        (
            "inventory/group_vars/all.yml",
            "from_group_vars: kept-beside-the-inventory\n",
        ),
        (
            "shared/roles/marker/tasks/main.yml",
            "- name: Record how the playbook ran\n  ansible.builtin.copy:\n    dest: \"{{ out }}\"\n    content: |\n      group_vars={{ from_group_vars }}\n      cwd={{ lookup('pipe', 'pwd') }}\n      host_key_checking={{ lookup('env', 'ANSIBLE_HOST_KEY_CHECKING') }}\n",
        ),
        (
            "ansible/site.yaml",
            "- hosts: all\n  gather_facts: false\n  roles: [marker]\n",
        ),
        (".gitignore", "inventory/inventory.yaml\n"),
    ];
    for (rel, text) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let run = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["init", "--quiet"]);
    run(&["add", "-A"]);
    run(&["commit", "--quiet", "-m", "playbooks"]);
    git(dir, &["rev-parse", "HEAD"]).trim().to_string()
}

#[test]
fn an_upstream_plan_runs_from_the_checkouts_root_with_its_configuration_and_group_vars() {
    let home = Home::new();
    let project = home.outside("project");
    let commit = upstream_project(&project);
    let plan = plan_dir(
        &home,
        &[(
            "plan.yaml",
            &format!(
                "id: proj\nupstream:\n  repository: {}\n  commit: {commit}\nphases:\n  - id: p\n    steps:\n      - id: site\n        playbook: ansible/site.yaml\n",
                project.display()
            ),
        )],
    )
    .join("plan.yaml");
    let plan = plan.to_str().unwrap();
    let out = home.outside("ran.txt");
    let inventory = home.outside("inventory.yaml");
    std::fs::write(
        &inventory,
        format!(
            "all:\n  hosts:\n    here:\n      ansible_connection: local\n      ansible_python_interpreter: \"{{{{ ansible_playbook_python }}}}\"\n  vars:\n    out: {}\n",
            out.display()
        ),
    )
    .unwrap();
    let deploy = [
        "deploy",
        "--plan",
        plan,
        "--inventory",
        inventory.to_str().unwrap(),
    ];
    home.run(&deploy)
        .expect(2, &["no checkout of it", "thinkube-deploy source --plan"]);
    let r = home.run(&["source", "--plan", plan]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let checkout = home.path().join("sources/project");
    let r = home.run(&deploy);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let ran = std::fs::read_to_string(&out).unwrap();
    assert!(
        ran.contains("group_vars=kept-beside-the-inventory"),
        "{ran}"
    );
    assert!(
        ran.contains(&format!("cwd={}", checkout.display())),
        "{ran}"
    );
    // The checkout's ansible.cfg turns host key checking off; the run keeps it on.
    assert!(ran.contains("host_key_checking=True"), "{ran}");
    assert_eq!(git(&checkout, &["status", "--porcelain"]), "");
}

/// A folder of this machine removed when the test ends (the thinkube playbook under
/// test writes the control plane user's `~/.env` there).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The plan's first steps that can run on a test host, as the real playbooks at the
/// pin: `env-setup` (this machine) and `persist-user-secrets` (the control plane,
/// over SSH to a real sshd on 127.0.0.1). The first run stops with the playbook's own
/// message (the control plane user has no home); once it has, `retry` completes, and
/// the token reached the server's `~/.env` but no file, log or event of ours.
#[test]
fn the_first_thinkube_steps_run_for_real_over_ssh_and_fail_with_the_playbooks_message() {
    use crate::ssh::{can_run, keygen, start_sshd};
    let Some(thinkube) = bundle("thinkube+thinkube") else {
        return;
    };
    if !can_run() {
        return;
    }
    let home = Home::new();
    let from = thinkube.display().to_string();
    // The thinkube plan's first two steps, same pin, same playbooks.
    let shown: serde_json::Value = serde_json::from_str(
        &home
            .run(&["plan", "show", "--plan", "thinkube", "--json"])
            .stdout,
    )
    .unwrap();
    let step = |id: &str| {
        shown["phases"][0]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()["playbook"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let plan = plan_dir(
        &home,
        &[(
            "plan.yaml",
            &format!(
                "id: thinkube-first\nupstream:\n  repository: {}\n  commit: {}\nphases:\n  - id: initial\n    steps:\n      - id: env-setup\n        playbook: {}\n      - id: persist-user-secrets\n        playbook: {}\n",
                shown["upstream"]["repository"].as_str().unwrap(),
                shown["upstream"]["commit"].as_str().unwrap(),
                step("env-setup"),
                step("persist-user-secrets")
            ),
        )],
    )
    .join("plan.yaml");
    let plan = plan.to_str().unwrap();
    assert_eq!(
        home.run(&["source", "--plan", plan, "--from", &from]).code,
        0
    );
    // A real server on 127.0.0.1, and the inventory `configure` writes for it.
    let dir = home.outside("ssh");
    std::fs::create_dir_all(&dir).unwrap();
    keygen(&dir.join("client"));
    keygen(&dir.join("host_key"));
    let port = free_port();
    let _sshd = start_sshd(&dir, &dir.join("host_key"), port);
    let user = format!("tktest{port}");
    let host = format!("tk1=127.0.0.1:{port}");
    let key = dir.join("client").display().to_string();
    let r = home.run(&[
        "configure",
        "--plan",
        "thinkube",
        "--target",
        "ssh",
        "--host",
        &host,
        "--role",
        "tk1=control",
        "--ssh-user",
        "root",
        "--ssh-auth",
        "key",
        "--ssh-key",
        &key,
        "--system-user",
        &user,
        "--domain",
        "thinkube.test",
        "--network-cidr",
        "192.168.1.0/24",
        "--gateway",
        "192.168.1.1",
        "--overlay",
        "zerotier",
        "--zerotier-network-id",
        "8056c2e21c000001",
        "--overlay-cidr",
        "192.168.191.0/24",
        "--overlay-ip",
        "tk1=192.168.191.11",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(home.run(&["hosts", "trust", "--yes"]).code, 0);
    let token = format!("ghp_test{port}secret");
    let run = |args: &[&str]| {
        let out = home
            .command(args)
            .env("GITHUB_TOKEN", &token)
            .output()
            .unwrap();
        Run::from(out)
    };
    let r = run(&["deploy", "--plan", plan]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let status = home.status_json();
    let steps = status["steps"].as_array().unwrap();
    assert_eq!(steps[0]["status"], "completed", "{status}");
    assert_eq!(steps[1]["status"], "failed", "{status}");
    let e = &steps[1]["last_error"];
    // The playbook's own words: the task that failed, on which host, and why.
    assert_eq!(e["host"], "tk1", "{e}");
    assert!(e["task"].as_str().unwrap().contains(".env"), "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains(&format!("/home/{user}/.env")),
        "{e}"
    );
    // env-setup wrote the user's ~/.env on this machine (HOME of the run).
    let env_file = std::fs::read_to_string(home.outside("user-home/.env")).unwrap();
    assert!(env_file.contains("DOMAIN_NAME=thinkube.test"), "{env_file}");
    // Give the control plane user a home; retry runs the failed step and completes.
    let server_home = RemoveOnDrop(PathBuf::from(format!("/home/{user}")));
    std::fs::create_dir(&server_home.0).unwrap();
    let r = run(&["retry"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(home.status_json()["deployment"]["status"], "completed");
    let persisted = std::fs::read_to_string(server_home.0.join(".env")).unwrap();
    assert!(
        persisted.contains(&format!("GITHUB_TOKEN={token}")),
        "{persisted}"
    );
    // ... and nowhere in the installer's own files.
    for path in crate::migration::walk(home.path()) {
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(&token),
                "the token is in {}",
                path.display()
            );
        }
    }
    // The checkout is still exactly the pin (env-setup's .env link is ignored by git).
    assert_eq!(
        git(
            &home.path().join("sources/thinkube"),
            &["status", "--porcelain"]
        ),
        ""
    );
}

#[test]
fn source_names_a_source_without_the_pin_and_a_folder_that_is_no_checkout() {
    let home = Home::new();
    // A repository that does not have thinkube's pinned commit.
    let other = home.outside("other");
    upstream_project(&other);
    let from = other.display().to_string();
    home.run(&["source", "--from", &from])
        .expect(2, &["is not in", &from, "--from PATH|URL"]);
    // The clone made for it is not left behind as a checkout at another commit.
    let dir = home.path().join("sources/thinkube");
    assert!(!dir.exists());
    // Something else where the checkout goes is left alone.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    home.run(&["source", "--from", &from])
        .expect(2, &["is not a git checkout", "nothing was changed"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "mine"
    );
    // A plan that runs its own playbooks needs no checkout.
    home.run(&["source", "--plan", "demo"])
        .expect(2, &["has no `upstream:`"]);
}

/// The completion page's addresses are the host names thinkube's own playbooks and
/// group variables give its services at the pinned commit (`<name>.{{ domain_name }}`),
/// and its credentials name the environment variables those playbooks read.
#[test]
fn the_completion_pages_addresses_are_the_host_names_thinkube_gives_its_services() {
    use std::collections::BTreeMap;
    use thinkube_engine::plan::builtin::{PlanRef, find};
    let Some(thinkube) = bundle("thinkube+thinkube") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("thinkube");
    clone(&thinkube, &repo);
    let plan = PlanRef::Builtin(find("thinkube").unwrap())
        .load(tmp.path())
        .unwrap();
    let pin = plan.upstream.as_ref().unwrap().commit.clone();
    let vars = BTreeMap::from([("domain_name".to_string(), "example.test".to_string())]);
    let choices = plan.choose(&BTreeMap::new(), &vars).unwrap();
    let links = plan.links_for(&choices);
    assert!(links.len() >= 10, "{links:?}");
    // What the playbooks at the pin write, in the form they write it.
    let at_pin = |needle: &str| {
        Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args([
                "grep",
                "-q",
                "-F",
                "-e",
                needle,
                &pin,
                "--",
                "ansible",
                "inventory",
            ])
            .status()
            .unwrap()
            .success()
    };
    for (title, url) in &links {
        let host = url
            .strip_prefix("https://")
            .and_then(|u| u.split('/').next())
            .unwrap_or_else(|| panic!("{title}: {url} is not https"));
        let name = host
            .strip_suffix(".example.test")
            .unwrap_or_else(|| panic!("{title}: {url} is not under the domain"));
        let written = format!("{name}.{{{{ domain_name }}}}");
        assert!(
            at_pin(&written),
            "{title}: no playbook or group variable at {pin} names `{written}`"
        );
    }
    // Without a domain there is nothing to link to: no link is shown.
    let none = plan.choose(&BTreeMap::new(), &BTreeMap::new()).unwrap();
    assert_eq!(plan.links_for(&none), Vec::<(String, String)>::new());
    let credentials = plan.credentials_for(&choices).unwrap();
    for read in [
        "lookup('env', 'ADMIN_PASSWORD')",
        "lookup('env', 'AUTH_REALM_PASSWORD')",
        "lookup('env', 'ANSIBLE_BECOME_PASSWORD')",
    ] {
        assert!(at_pin(read), "nothing at the pin reads {read}");
        let name = read.split('\'').nth(3).unwrap();
        assert!(credentials.contains(name), "{credentials}");
    }
    // The realm user the credentials name is the one thinkube's inventory sets.
    assert!(credentials.contains("realm user thinkube"), "{credentials}");
    assert!(
        std::fs::read_to_string(INVENTORY)
            .unwrap()
            .contains("auth_realm_username: thinkube"),
        "the fixture inventory names another realm user"
    );
}

/// A state the earlier installer wrote (v2, its step ids) continues against the
/// built-in plan: completed steps are kept and never run again, its failed step runs
/// again with `retry`, and a step the plan has that the old queue did not is pending.
/// The playbooks are a checkout of one's own (`--var playbooks_root`) at the plan's
/// paths, each only noting that it ran on this machine, so no server is needed.
#[test]
fn an_earlier_installers_state_continues_with_the_plan_step_for_step() {
    let home = Home::new();
    let shown = home.run(&["plan", "show", "--plan", "thinkube", "--json"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let outline: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    let steps = applicable_steps(&outline);
    // The checkout: every playbook notes its step's path; github-cli's fails.
    let root = home.outside("own-checkout");
    let ran = home.outside("ran");
    std::fs::create_dir_all(&ran).unwrap();
    for (id, _, _, playbook) in &steps {
        let file = root.join(playbook);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let task = if id == "github-cli" {
            "    - ansible.builtin.fail:\n        msg: gh is not packaged here\n".to_string()
        } else {
            format!(
                "    - ansible.builtin.copy:\n        content: ran\n        dest: \"{}/{}\"\n",
                ran.display(),
                playbook.replace('/', "_")
            )
        };
        std::fs::write(
            &file,
            format!(
                "- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n{task}"
            ),
        )
        .unwrap();
    }
    let inventory = home.outside("inventory.yaml");
    std::fs::write(
        &inventory,
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n      ansible_python_interpreter: /usr/bin/python3\n",
    )
    .unwrap();
    // What the earlier installer saved: its queue of that day without the GPU
    // operator (a step the plan has now), three steps done, python-setup failed.
    let done = ["env-setup", "persist-user-secrets", "expand-lvm"];
    let queue: Vec<serde_json::Value> = steps
        .iter()
        .filter(|(id, ..)| id != "gpu-operator")
        .map(|(id, phase, title, playbook)| {
            let status = if done.contains(&id.as_str()) {
                "completed"
            } else if id == "python-setup" {
                "failed"
            } else {
                "pending"
            };
            let mut b = serde_json::json!({
                "id": id, "phase": phase, "title": title, "name": playbook, "status": status,
            });
            if status == "failed" {
                b["error"] = "Playbook execution failed".into();
            }
            b
        })
        .collect();
    let v2 = serde_json::json!({
        "version": 2,
        "timestamp": "2026-05-26T10:00:00.000Z",
        "currentIndex": 3,
        "completedIds": done,
        "failedIds": ["python-setup"],
        "allPlaybooks": queue,
    });
    home.write_state(&serde_json::to_vec(&v2).unwrap());
    let before = home.status_json();
    assert_eq!(before["deployment"]["status"], "failed");
    assert_eq!(before["deployment"]["plan_id"], "thinkube");
    let own = format!("playbooks_root={}", root.display());
    let inv = inventory.display().to_string();
    let r = home.run(&["retry", "--var", &own, "--inventory", &inv, "--skip-checks"]);
    // It stops at github-cli, with the playbook's own message.
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let after = home.status_json();
    let status = |id: &str| {
        after["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no step {id}: {after}"))
            .clone()
    };
    for id in done {
        assert_eq!(status(id)["status"], "completed", "{id}");
    }
    assert_eq!(
        status("python-setup")["status"],
        "completed",
        "{}\n{}",
        status("python-setup"),
        r.stderr
    );
    assert_eq!(status("python-setup")["attempts"], 2);
    let cli = status("github-cli");
    assert_eq!(cli["status"], "failed");
    assert_eq!(cli["last_error"]["message"], "gh is not packaged here");
    // The step the old queue did not have is there, pending, in plan order.
    assert_eq!(status("gpu-operator")["status"], "pending");
    let ids: Vec<&str> = after["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    // Every step of the plan, in its order; those the flags leave out are skipped.
    let planned: Vec<String> = outline["phases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["steps"].as_array().unwrap().iter())
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, planned);
    for id in &planned {
        if !steps.iter().any(|(s, ..)| s == id) {
            assert_eq!(status(id)["status"], "skipped", "{id}");
        }
    }
    // Only what was not done ran: not one of the completed steps' playbooks.
    let mut noted: Vec<String> = std::fs::read_dir(&ran)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    noted.sort();
    assert_eq!(
        noted,
        ["ansible_40_thinkube_core_infrastructure_00_setup_python_k8s.yaml"]
    );
}
