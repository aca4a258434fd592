//! One environment's state and lock shared by two homes ("machines") through Azure
//! Blob Storage: a real Azurite, started by each test on a port of its own.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use thinkube_blob::Condition;
use thinkube_blob::azurite::Azurite;

use crate::common::*;

struct Backend {
    _dir: tempfile::TempDir,
    azurite: Azurite,
    url: String,
}

const CONTAINER: &str = "states";
const STATE_BLOB: &str = "team/default/deployment-state.json";

fn backend() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let azurite = Azurite::start(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let url = format!(
        "azblob://{}/{CONTAINER}/team?endpoint={}",
        thinkube_blob::DEV_ACCOUNT,
        azurite.endpoint()
    );
    Backend {
        _dir: dir,
        azurite,
        url,
    }
}

/// `thinkube-deploy --backend URL ARGS` in `home`, with the account's key.
fn shared(home: &Home, b: &Backend, args: &[&str]) -> std::process::Command {
    let mut all = vec!["--backend", b.url.as_str()];
    all.extend_from_slice(args);
    let mut c = home.command(&all);
    c.env("AZURE_STORAGE_KEY", Azurite::key());
    c
}

fn run(home: &Home, b: &Backend, args: &[&str]) -> Run {
    Run::from(shared(home, b, args).output().unwrap())
}

fn status(home: &Home, b: &Backend) -> serde_json::Value {
    let r = run(home, b, &["status", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

/// A plan whose second step waits for the file `go` beside it.
fn waiting_plan(home: &Home) -> std::path::PathBuf {
    let dir = plan_dir(
        home,
        &[(
            "plan.yaml",
            "id: shared
phases:
  - id: p
    steps:
      - id: first
        command: [\"true\"]
      - id: wait
        command: [sh, -c, \"echo child-started; while [ ! -f go ]; do sleep 0.05; done\"]
      - id: after
        command: [\"true\"]
",
        )],
    );
    dir.join("plan.yaml")
}

/// Starts a deploy through the backend and returns once its waiting step runs.
fn start_waiting(home: &Home, b: &Backend, plan: &std::path::Path) -> Child {
    let mut child = shared(home, b, &["deploy", "--plan", plan.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    assert!(
        lines.by_ref().any(|l| l.unwrap().contains("child-started")),
        "the deploy ended before its waiting step ran"
    );
    std::thread::spawn(move || lines.for_each(drop));
    child
}

/// Reads `status` until `done` holds of it (what another machine sees changes as
/// the writer commits), failing after a minute.
fn status_until(
    home: &Home,
    b: &Backend,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let v = status(home, b);
        if done(&v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never saw {what}: {v:#}"
        );
    }
}

#[test]
fn two_machines_share_one_state_and_the_second_is_refused_while_the_first_deploys() {
    let b = backend();
    let (one, two) = (Home::new(), Home::new());
    let plan = waiting_plan(&one);
    let mut writer = KillOnDrop(start_waiting(&one, &b, &plan));
    let pid = writer.0.id();

    // The other machine sees the writer's progress and who holds the lock.
    let v = status_until(&two, &b, "the waiting step running", |v| {
        v["steps"][1]["status"] == "running"
    });
    assert_eq!(v["steps"][0]["status"], "completed");
    assert_eq!(v["lock"]["held"], true);
    assert_eq!(v["lock"]["pid"], pid);
    assert_eq!(v["lock"]["operation"], "deploy");
    assert_eq!(v["shared"]["backend"], b.url.as_str());
    assert!(v["shared"]["unreachable"].is_null(), "{v:#}");
    let left = v["shared"]["lease_expires_in_seconds"].as_u64().unwrap();
    assert!(left <= 15, "{left}");
    let text = run(&two, &b, &["status"]).stdout;
    assert!(
        text.contains(&format!("Lock: held by pid {pid} on ")),
        "{text}"
    );
    assert!(text.contains(&format!("Shared: {}", b.url)), "{text}");
    // Nothing of it is in the other home's files: readers write only their cache.
    assert!(!two.state_file().exists());

    // Its deploy is refused, naming the holder; nothing changes.
    let serial = v["serial"].as_u64().unwrap();
    run(&two, &b, &["deploy", "--plan", plan.to_str().unwrap()]).expect(
        3,
        &[
            &format!("locked by pid {pid} on "),
            "operation `deploy`",
            "--lock-timeout",
        ],
    );
    assert_eq!(status(&two, &b)["serial"].as_u64().unwrap(), serial);

    std::fs::write(plan.parent().unwrap().join("go"), "").unwrap();
    assert_eq!(writer.0.wait().unwrap().code(), Some(0));

    // Both see the same deployment, at the same serial, as the writer's own file.
    let mine = one.status_json();
    let theirs = status(&two, &b);
    assert_eq!(mine["deployment"]["status"], "completed");
    assert_eq!(theirs["lineage"], mine["lineage"]);
    assert_eq!(theirs["serial"], mine["serial"]);
    assert_eq!(theirs["lock"]["held"], false);

    // The shared trail has every event, in order, as the writer's own; its run is
    // kept beside the state.
    let client = b.azurite.client(CONTAINER);
    let seqs = |text: &str| -> Vec<u64> {
        text.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let trail = client
        .get("team/default/events.jsonl")
        .unwrap()
        .unwrap()
        .bytes;
    let local_trail = std::fs::read_to_string(one.path().join("events.jsonl")).unwrap();
    assert_eq!(seqs(&String::from_utf8(trail).unwrap()), seqs(&local_trail));
    assert!(seqs(&local_trail).len() >= 8, "{local_trail}");
    let run_id = mine["current_run"]["run_id"].as_str().unwrap();
    let shared_run = client
        .get(&format!("team/default/runs/{run_id}.json"))
        .unwrap()
        .expect("the run's record is shared");
    let local_run = std::fs::read(one.path().join("runs").join(format!("{run_id}.json"))).unwrap();
    assert_eq!(shared_run.bytes, local_run);

    // The second machine now deploys on the same lineage.
    let r = run(&two, &b, &["deploy", "--plan", plan.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let after = status(&two, &b);
    assert_eq!(after["lineage"], mine["lineage"]);
    assert!(
        after["serial"].as_u64() >= mine["serial"].as_u64(),
        "{after:#}"
    );
    assert_eq!(after["deployment"]["status"], "completed");
    assert_eq!(
        two.status_json()["lineage"],
        mine["lineage"],
        "its home took the shared state"
    );
}

/// A writer whose lease was broken by hand, after another wrote a newer state, stops
/// at its next commit and never overwrites that state.
#[test]
fn a_writer_whose_lease_was_broken_cannot_overwrite_a_newer_state() {
    let b = backend();
    let one = Home::new();
    let plan = waiting_plan(&one);
    let mut writer = KillOnDrop(start_waiting(&one, &b, &plan));
    let client = b.azurite.client(CONTAINER);
    client.break_lease("team/default/lock").unwrap();
    // Another writer's newer state, written as a writer writes it (If-Match).
    let blob = client.get(STATE_BLOB).unwrap().unwrap();
    let mut newer: serde_json::Value = serde_json::from_slice(&blob.bytes).unwrap();
    newer["serial"] = (newer["serial"].as_u64().unwrap() + 10).into();
    let newer = serde_json::to_vec(&newer).unwrap();
    client
        .put(STATE_BLOB, newer.clone(), Condition::Match(&blob.etag))
        .unwrap();

    std::fs::write(plan.parent().unwrap().join("go"), "").unwrap();
    let mut stderr = writer.0.stderr.take().unwrap();
    let code = writer.0.wait().unwrap().code();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
    let output = (code, err);
    assert_eq!(output.0, Some(3), "{}", output.1);
    assert!(
        output.1.contains("no longer holds the shared lock"),
        "{}",
        output.1
    );
    assert_eq!(
        client.get(STATE_BLOB).unwrap().unwrap().bytes,
        newer,
        "the newer state stays"
    );
}

/// The writer is killed (SIGKILL: no release): its lease expires by itself and the
/// other machine resumes where it stopped, waiting for the lock with --lock-timeout.
#[test]
fn a_killed_writers_lock_expires_and_the_other_machine_resumes_with_nothing_lost() {
    let b = backend();
    let (one, two) = (Home::new(), Home::new());
    let plan = waiting_plan(&one);
    let mut writer = KillOnDrop(start_waiting(&one, &b, &plan));
    let pid = writer.0.id();
    writer.0.kill().unwrap();
    writer.0.wait().unwrap();
    // Until the lease expires the holder is shown, and a writer without a wait is refused.
    let v = status(&two, &b);
    assert_eq!(v["lock"]["pid"], pid, "{v:#}");
    assert_eq!(v["steps"][1]["status"], "running");
    run(&two, &b, &["resume"]).expect(3, &[&format!("locked by pid {pid}"), "within 15 seconds"]);

    std::fs::write(plan.parent().unwrap().join("go"), "").unwrap();
    let r = run(&two, &b, &["--lock-timeout", "60", "resume"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = status(&two, &b);
    assert_eq!(v["deployment"]["status"], "completed", "{v:#}");
    assert_eq!(v["steps"][0]["status"], "completed");
    assert_eq!(v["steps"][2]["status"], "completed");
    // The killed attempt stays in the record as interrupted, beside the one that ran.
    assert_eq!(v["steps"][1]["attempts"], 2, "{v:#}");
    assert_eq!(
        v["steps"][0]["attempts"], 1,
        "the first step did not run again"
    );
    let local = two.status_json();
    assert_eq!(
        (&local["lineage"], &local["serial"]),
        (&v["lineage"], &v["serial"])
    );
}

/// The storage goes away in the middle of a run: the writer stops at its next commit
/// with a clear error, its home keeps what it committed, `status` answers from the
/// cache saying so, and a resume once the storage is back completes the deployment.
#[test]
fn storage_gone_mid_run_stops_the_writer_and_a_resume_completes_once_it_is_back() {
    let mut b = backend();
    let (one, two) = (Home::new(), Home::new());
    let plan = waiting_plan(&one);
    let before = {
        let mut writer = KillOnDrop(start_waiting(&one, &b, &plan));
        let seen = status(&two, &b); // fills the other home's cache
        b.azurite.kill_now();
        std::fs::write(plan.parent().unwrap().join("go"), "").unwrap();
        let mut stderr = writer.0.stderr.take().unwrap();
        let code = writer.0.wait().unwrap().code();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("cannot reach Azure Storage"), "{err}");
        seen
    };
    // The writer's home holds every commit it made, the waiting step's end included.
    let local = one.status_json();
    assert_eq!(local["steps"][1]["status"], "completed", "{local:#}");

    let cached = status(&two, &b);
    assert_eq!(cached["serial"], before["serial"]);
    assert!(
        cached["shared"]["unreachable"]
            .as_str()
            .unwrap()
            .contains("cannot reach"),
        "{cached:#}"
    );
    let text = run(&two, &b, &["status"]).stdout;
    assert!(text.contains("cannot be reached now"), "{text}");

    b.azurite.restart().unwrap();
    let r = run(&one, &b, &["--lock-timeout", "60", "resume"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = status(&two, &b);
    assert_eq!(v["deployment"]["status"], "completed", "{v:#}");
    assert!(v["shared"]["unreachable"].is_null());
    assert_eq!(v["serial"], one.status_json()["serial"]);
}

/// A wrong key, or a backend URL that names no container, is a clear error and
/// nothing is written anywhere.
#[test]
fn a_wrong_key_or_a_bad_backend_url_is_a_clear_error_and_writes_nothing() {
    let b = backend();
    let one = Home::new();
    let plan = waiting_plan(&one);
    let mut c = shared(&one, &b, &["deploy", "--plan", plan.to_str().unwrap()]);
    c.env("AZURE_STORAGE_KEY", "d3Jvbmcta2V5");
    Run::from(c.output().unwrap())
        .expect(1, &["refused account `devstoreaccount1`", "Check the key"]);
    assert!(!one.state_file().exists());
    assert!(
        b.azurite
            .client(CONTAINER)
            .get(STATE_BLOB)
            .unwrap()
            .is_none()
    );

    let r = Run::from(
        one.command(&["--backend", "azblob://devstoreaccount1", "status"])
            .output()
            .unwrap(),
    );
    r.expect(2, &["names no container", "azblob://ACCOUNT/CONTAINER"]);
    let mut c = one.command(&["--backend", &b.url, "status"]);
    c.env_remove("AZURE_STORAGE_KEY");
    Run::from(c.output().unwrap()).expect(2, &["needs credentials", "AZURE_STORAGE_KEY"]);
}

/// `backend push` moves a home's deployment to the shared backend, `backend pull`
/// takes it into another home; another deployment is refused on either side, and
/// so is pushing over a newer state.
#[test]
fn push_and_pull_move_a_deployment_and_refuse_another_one_or_a_newer_state() {
    let b = backend();
    let (one, two, three) = (Home::new(), Home::new(), Home::new());
    let plan = waiting_plan(&one);
    std::fs::write(plan.parent().unwrap().join("go"), "").unwrap();
    let local = one.run(&["deploy", "--plan", plan.to_str().unwrap()]);
    assert_eq!(local.code, 0, "{}", local.stderr);
    let mine = one.status_json();
    let run_id = mine["current_run"]["run_id"].as_str().unwrap().to_string();

    let mut push = one.command(&["backend", "push", &b.url]);
    push.env("AZURE_STORAGE_KEY", Azurite::key());
    Run::from(push.output().unwrap()).expect(0, &[]);
    let shown = status(&one, &b);
    assert_eq!(
        (&shown["lineage"], &shown["serial"]),
        (&mine["lineage"], &mine["serial"])
    );
    let client = b.azurite.client(CONTAINER);
    assert!(
        client
            .get(&format!("team/default/runs/{run_id}.json"))
            .unwrap()
            .is_some()
    );
    let trail = String::from_utf8(
        client
            .get("team/default/events.jsonl")
            .unwrap()
            .unwrap()
            .bytes,
    )
    .unwrap();
    assert_eq!(
        trail.lines().count(),
        std::fs::read_to_string(one.path().join("events.jsonl"))
            .unwrap()
            .lines()
            .count(),
        "every event of the home's trail is pushed"
    );

    let r = run(&two, &b, &["backend", "pull"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("1 run(s) copied"), "{}", r.stdout);
    assert_eq!(two.status_json()["lineage"], mine["lineage"]);
    assert!(
        two.path()
            .join("runs")
            .join(format!("{run_id}.json"))
            .is_file()
    );
    let shown: serde_json::Value =
        serde_json::from_str(&run(&two, &b, &["backend", "show", "--json"]).stdout).unwrap();
    assert_eq!(shown["backend"], b.url.as_str());
    assert_eq!(shown["local"]["lineage"], shown["shared"]["lineage"]);
    assert!(shown["shared"]["holder"].is_null());

    // Another deployment is refused both ways; nothing changes.
    let other = three.run(&["deploy", "--plan", plan.to_str().unwrap()]);
    assert_eq!(other.code, 0, "{}", other.stderr);
    let mut push = three.command(&["backend", "push", &b.url]);
    push.env("AZURE_STORAGE_KEY", Azurite::key());
    Run::from(push.output().unwrap()).expect(2, &["another deployment", "nothing was pushed"]);
    run(&three, &b, &["backend", "pull"]).expect(2, &["another deployment"]);
    assert_ne!(three.status_json()["lineage"], mine["lineage"]);

    // The shared state moves on (the second home clears it); the first home's
    // older copy cannot be pushed over it.
    run(&two, &b, &["clean-state", "--yes"]).expect(0, &[]);
    let mut push = one.command(&["backend", "push", &b.url]);
    push.env("AZURE_STORAGE_KEY", Azurite::key());
    Run::from(push.output().unwrap()).expect(2, &["newer state", "backend pull"]);
    assert_eq!(status(&two, &b)["deployment"]["status"], "not_started");
}

/// A TCP proxy on 127.0.0.1 in front of Azurite that can drop every connection and
/// refuse new ones (a network that fails), and let them through again.
struct Proxy {
    port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start(to: u16) -> Self {
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>> = Default::default();
        let (o, c) = (open.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !o.load(Ordering::SeqCst) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                let mut kept = c.lock().unwrap();
                kept.push(client.try_clone().unwrap());
                kept.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, open, conns }
    }

    /// Drops every connection now and refuses new ones.
    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The network drops every connection mid-run: the writer stops at its next commit
/// (exit 1, saying it cannot reach the storage), the shared state stays whole (the
/// last commit that reached it), and a resume once the network is back completes.
#[test]
fn a_network_that_drops_connections_mid_run_stops_the_writer_and_loses_nothing() {
    let mut b = backend();
    let proxy = Proxy::start(b.azurite.port);
    b.url = format!(
        "azblob://{}/{CONTAINER}/team?endpoint=http://127.0.0.1:{}/{}",
        thinkube_blob::DEV_ACCOUNT,
        proxy.port,
        thinkube_blob::DEV_ACCOUNT
    );
    let one = Home::new();
    let plan = waiting_plan(&one);
    let mut writer = KillOnDrop(start_waiting(&one, &b, &plan));
    let client = b.azurite.client(CONTAINER);
    let before = client.get(STATE_BLOB).unwrap().unwrap();
    proxy.cut();
    std::fs::write(plan.parent().unwrap().join("go"), "").unwrap();
    let mut stderr = writer.0.stderr.take().unwrap();
    let code = writer.0.wait().unwrap().code();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot reach Azure Storage"), "{err}");
    // The shared state is the last commit that reached it, whole.
    let after = client.get(STATE_BLOB).unwrap().unwrap();
    assert_eq!(after, before);
    let v: serde_json::Value = serde_json::from_slice(&after.bytes).unwrap();
    assert_eq!(v["deployment"]["steps"][1]["status"], "running");

    proxy.restore();
    let r = run(&one, &b, &["--lock-timeout", "60", "resume"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = status(&one, &b);
    assert_eq!(v["deployment"]["status"], "completed", "{v:#}");
    assert_eq!(v["serial"], one.status_json()["serial"]);
}
