//! Tokens kept in the desktop's keyring, when the user chooses: the Secret Service
//! on the session bus (GNOME Keyring, KWallet, KeePassXC), through the `keyring`
//! crate over libdbus (docs/decisions/0018-tokens-in-the-desktop-keyring.md). The
//! keyring encrypts what it keeps and unlocks it with the user's login; the
//! installer itself never writes a token to a file.
//!
//! An entry is named by the token and the environment's folder, so two homes or two
//! environments never read each other's tokens.

use std::path::Path;

use serde::Serialize;
use ts_rs::TS;

/// The service every entry is filed under (the bundle identifier).
const SERVICE: &str = "org.thinkube.installer";

/// Whether this desktop has a keyring the installer can use, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[ts(export)]
pub struct KeyringStatus {
    pub available: bool,
    /// Why not, in words (no session bus, no Secret Service, locked), when it is not.
    pub why: Option<String>,
}

/// The keyring entries of one environment.
pub struct Keyring {
    /// The environment's folder: part of each entry's name.
    scope: String,
}

impl Keyring {
    pub fn for_environment(root: &Path) -> Self {
        Self {
            scope: root.display().to_string(),
        }
    }

    fn entry(&self, token: &str) -> Result<keyring::Entry, String> {
        keyring::Entry::new(SERVICE, &format!("{token} for {}", self.scope)).map_err(|e| why(&e))
    }

    /// Can tokens be kept here? Asks the keyring for an entry (no entry is an answer).
    pub fn status(&self) -> KeyringStatus {
        match self.get("THINKUBE_KEYRING_PROBE") {
            Ok(_) => KeyringStatus {
                available: true,
                why: None,
            },
            Err(why) => KeyringStatus {
                available: false,
                why: Some(why),
            },
        }
    }

    /// The token's value, when the keyring has it.
    pub fn get(&self, token: &str) -> Result<Option<String>, String> {
        match self.entry(token)?.get_password() {
            Ok(v) => Ok(Some(v).filter(|v| !v.is_empty())),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(why(&e)),
        }
    }

    /// Keeps the token (replacing what was kept).
    pub fn set(&self, token: &str, value: &str) -> Result<(), String> {
        self.entry(token)?
            .set_password(value)
            .map_err(|e| format!("could not keep {token} in the keyring: {}", why(&e)))
    }

    /// Removes the token; nothing to remove is not an error.
    pub fn forget(&self, token: &str) -> Result<(), String> {
        match self.entry(token)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(format!(
                "could not remove {token} from the keyring: {}",
                why(&e)
            )),
        }
    }
}

/// The keyring's error in words a user can act on (it never holds a value).
fn why(e: &keyring::Error) -> String {
    match e {
        keyring::Error::PlatformFailure(inner) => {
            let s = inner.to_string();
            if s.contains("org.freedesktop.secrets") || s.contains("ServiceUnknown") {
                "this desktop runs no keyring (no Secret Service such as GNOME Keyring or KWallet on the session bus)".to_string()
            } else if s.contains("connect to socket") || s.contains("DBUS_SESSION_BUS_ADDRESS") {
                "there is no desktop session bus, so no keyring".to_string()
            } else {
                format!("the keyring failed: {s}")
            }
        }
        keyring::Error::NoStorageAccess(inner) => {
            format!("the keyring is locked or refused access ({inner}); unlock it and try again")
        }
        other => format!("the keyring failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::*;

    /// Set in the child process that talks to the test's own keyring.
    const CHILD: &str = "THINKUBE_KEYRING_TEST_CHILD";

    struct Daemons(Vec<Child>);
    impl Drop for Daemons {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    fn which(program: &str) -> Option<PathBuf> {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(program))
                .find(|f| f.is_file())
        })
    }

    /// Whether `name` has an owner on the bus at `address`.
    fn has_owner(address: &str, name: &str) -> bool {
        let Ok(mut channel) = dbus::channel::Channel::open_private(address) else {
            return false;
        };
        if channel.register().is_err() {
            return false;
        }
        let conn: dbus::blocking::Connection = channel.into();
        let bus = conn.with_proxy(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            Duration::from_secs(5),
        );
        let owned: Result<(bool,), _> =
            bus.method_call("org.freedesktop.DBus", "NameHasOwner", (name,));
        owned.is_ok_and(|(b,)| b)
    }

    /// A session bus of the test's own, in `dir`.
    fn start_bus(dir: &Path) -> (Daemons, String) {
        let address = format!("unix:path={}", dir.join("bus").display());
        // A session bus that starts no service by itself (the desktop's own bus would
        // start the system's GNOME Keyring on the first request, on the real home).
        let config = dir.join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<busconfig>
  <type>session</type>
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#
            ),
        )
        .expect("bus configuration");
        let mut daemons = Daemons(Vec::new());
        daemons.0.push(
            Command::new("dbus-daemon")
                .args(["--nofork", &format!("--config-file={}", config.display())])
                .stdout(Stdio::null())
                .spawn()
                .expect("dbus-daemon starts"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !has_owner(&address, "org.freedesktop.DBus") {
            assert!(Instant::now() < deadline, "the test's bus never answered");
            std::thread::sleep(Duration::from_millis(50));
        }
        (daemons, address)
    }

    /// An unlocked GNOME Keyring of the test's own on the bus at `address`.
    fn start_gnome_keyring(daemons: &mut Daemons, dir: &Path, address: &str) {
        let data = dir.join("data");
        let run = dir.join("run");
        std::fs::create_dir_all(&data).expect("data folder");
        std::fs::create_dir_all(&run).expect("runtime folder");
        let mut keyring = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--components=secrets", "--unlock"])
            .env("DBUS_SESSION_BUS_ADDRESS", address)
            .env("HOME", dir)
            .env("XDG_DATA_HOME", &data)
            .env("XDG_RUNTIME_DIR", &run)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gnome-keyring-daemon starts");
        // The login keyring's password, read from stdin up to its end.
        let mut stdin = keyring.stdin.take().expect("its stdin");
        stdin.write_all(b"test login").expect("password written");
        drop(stdin);
        daemons.0.push(keyring);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !has_owner(address, "org.freedesktop.secrets") {
            assert!(
                Instant::now() < deadline,
                "GNOME Keyring never took its name"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs the child test `name` of this binary with the bus at `address`.
    fn run_child(name: &str, dir: &Path, address: &str) {
        let out = Command::new(std::env::current_exe().expect("test binary"))
            .args([name, "--exact", "--ignored", "--nocapture"])
            .env(CHILD, dir)
            .env("DBUS_SESSION_BUS_ADDRESS", address)
            .output()
            .expect("child runs");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{name}: {said}");
        assert!(said.contains("1 passed"), "{name} ran no check: {said}");
    }

    /// Every file under `dir` that holds `needle` as plain bytes.
    fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    todo.push(p);
                } else if std::fs::read(&p)
                    .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
                {
                    found.push(p);
                }
            }
        }
        found
    }

    #[test]
    fn tokens_kept_in_a_real_keyring_are_read_back_per_environment_and_forgotten() {
        let (Some(_), Some(_)) = (which("dbus-daemon"), which("gnome-keyring-daemon")) else {
            eprintln!(
                "skipped: needs dbus-daemon and gnome-keyring-daemon (scripts/ensure-system installs them)"
            );
            return;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        // The keyring crate finds the bus through the environment: the checks run in
        // child processes of this test binary that have the test's bus as their own.
        let (mut daemons, address) = start_bus(dir.path());
        run_child(
            "keyring::tests::child_on_a_bus_without_a_keyring",
            dir.path(),
            &address,
        );
        start_gnome_keyring(&mut daemons, dir.path(), &address);
        run_child(
            "keyring::tests::child_on_the_tests_keyring",
            dir.path(),
            &address,
        );
        // The keyring encrypts what it keeps: no file holds the token as it is.
        assert_eq!(
            files_holding(dir.path(), "cf-token-kept-1"),
            Vec::<PathBuf>::new()
        );
    }

    /// Runs only as the child of the test above, on its keyring.
    #[test]
    #[ignore = "run by tokens_kept_in_a_real_keyring_are_read_back_per_environment_and_forgotten"]
    fn child_on_the_tests_keyring() {
        let Some(dir) = std::env::var_os(CHILD) else {
            return;
        };
        let dir = PathBuf::from(dir);
        let default = Keyring::for_environment(&dir.join("home"));
        let staging = Keyring::for_environment(&dir.join("home/environments/staging"));
        assert_eq!(
            default.status(),
            KeyringStatus {
                available: true,
                why: None
            }
        );
        assert_eq!(default.get("CLOUDFLARE_TOKEN"), Ok(None));
        default
            .set("CLOUDFLARE_TOKEN", "cf-token-kept-1")
            .expect("kept");
        assert_eq!(
            default.get("CLOUDFLARE_TOKEN"),
            Ok(Some("cf-token-kept-1".to_string()))
        );
        // Another environment has its own entries.
        assert_eq!(staging.get("CLOUDFLARE_TOKEN"), Ok(None));
        // Kept again: replaced, not added beside.
        default
            .set("CLOUDFLARE_TOKEN", "cf-token-kept-2")
            .expect("replaced");
        assert_eq!(
            default.get("CLOUDFLARE_TOKEN"),
            Ok(Some("cf-token-kept-2".to_string()))
        );
        default.forget("CLOUDFLARE_TOKEN").expect("forgotten");
        assert_eq!(default.get("CLOUDFLARE_TOKEN"), Ok(None));
        // Forgetting what is not there is fine.
        default
            .forget("CLOUDFLARE_TOKEN")
            .expect("nothing to forget");
        // Still kept when the child ends: the parent finds it in no file as it is.
        default
            .set("GITHUB_TOKEN", "cf-token-kept-1")
            .expect("kept");
        assert!(default.get("GITHUB_TOKEN").is_ok_and(|v| v.is_some()));
    }

    #[test]
    #[ignore = "run by tokens_kept_in_a_real_keyring_are_read_back_per_environment_and_forgotten"]
    fn child_on_a_bus_without_a_keyring() {
        let Some(dir) = std::env::var_os(CHILD) else {
            return;
        };
        let status = Keyring::for_environment(Path::new(&dir)).status();
        assert_eq!(
            status.why.as_deref(),
            Some(
                "this desktop runs no keyring (no Secret Service such as GNOME Keyring or KWallet on the session bus)"
            )
        );
        assert!(!status.available);
    }

    #[test]
    fn without_a_session_bus_the_keyring_says_it_is_not_there() {
        let dir = tempfile::tempdir().expect("temp dir");
        let address = format!("unix:path={}", dir.path().join("no-bus").display());
        run_child("keyring::tests::child_without_a_bus", dir.path(), &address);
    }

    #[test]
    #[ignore = "run by without_a_session_bus_the_keyring_says_it_is_not_there"]
    fn child_without_a_bus() {
        let Some(dir) = std::env::var_os(CHILD) else {
            return;
        };
        let k = Keyring::for_environment(Path::new(&dir));
        let status = k.status();
        assert!(!status.available);
        assert_eq!(
            status.why.as_deref(),
            Some("there is no desktop session bus, so no keyring")
        );
        let err = k.set("CLOUDFLARE_TOKEN", "x").expect_err("no keyring");
        assert_eq!(
            err,
            "could not keep CLOUDFLARE_TOKEN in the keyring: there is no desktop session bus, so no keyring"
        );
    }
}
