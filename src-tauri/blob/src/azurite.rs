//! Azurite, Azure Storage's emulator, started on 127.0.0.1 on a port of its own, for
//! tests (of this crate, of the engine's shared store, of the app). Installed under
//! `target/azurite` by `scripts/ensure-system`; `THINKUBE_AZURITE_BLOB` names another
//! `azurite-blob`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::{Client, Credential, DEV_ACCOUNT, DEV_KEY, Location};

/// A running Azurite blob service; killed when dropped.
pub struct Azurite {
    child: Child,
    pub port: u16,
    data: PathBuf,
}

/// Where `azurite-blob` is: `THINKUBE_AZURITE_BLOB`, else `target/azurite` of this
/// workspace.
pub fn program() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("THINKUBE_AZURITE_BLOB") {
        return Ok(PathBuf::from(p));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p = workspace.join("target/azurite/node_modules/.bin/azurite-blob");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "azurite is not installed at {}: run scripts/ensure-system (it installs it under target/azurite)",
            p.display()
        ))
    }
}

impl Azurite {
    /// Starts Azurite keeping its data in `data` (a folder of the test's own), on a
    /// port the kernel picks (0), and waits until it says where it listens.
    pub fn start(data: &Path) -> Result<Self, String> {
        Self::start_on(data, 0)
    }

    /// The same on `port` (to start it again where a client expects it).
    pub fn start_on(data: &Path, port: u16) -> Result<Self, String> {
        let program = program()?;
        let mut child = Command::new(&program)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(data)
            .args(["--skipApiVersionCheck", "--loose"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let stdout = child.stdout.take().ok_or("azurite has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mark = "successfully listens on http://127.0.0.1:";
        let port = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                let _ = child.wait();
                return Err("azurite ended before it listened (see its output above)".into());
            };
            if let Some(rest) = line.split(mark).nth(1) {
                break rest.trim().parse::<u16>().map_err(|e| e.to_string())?;
            }
        };
        // Keep reading what it prints, so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Ok(Self {
            child,
            port,
            data: data.to_path_buf(),
        })
    }

    /// The blob endpoint, path-style: `http://127.0.0.1:PORT/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{DEV_ACCOUNT}", self.port)
    }

    /// The development account's well-known key (public: Azurite's documented one).
    pub fn key() -> &'static str {
        DEV_KEY
    }

    /// A client of `container`, with the development account's key.
    pub fn client(&self, container: &str) -> Client {
        Client::new(
            Location {
                endpoint: self.endpoint(),
                account: DEV_ACCOUNT.into(),
                container: container.into(),
            },
            Credential::shared_key(DEV_KEY).expect("the development key is base64"),
        )
        .expect("a client of Azurite")
    }

    /// Kills it at once (SIGKILL), as a crash or a pulled cable would: clients'
    /// connections end now. What it acknowledged in its last seconds may be lost
    /// (Azurite keeps its blob index in memory and saves it every few seconds; a
    /// real account would keep it): tests must hold either way. (A SIGTERM would
    /// save it, but Azurite then waits, for minutes at times, before it exits.)
    pub fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill_now();
        *self = Self::start_on(&self.data.clone(), self.port)?;
        Ok(())
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        // Its data is the test's, about to go: no need to save it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
