//! Where the installer keeps its files: the installer home, named environments, and
//! the layout of one environment's folder.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::EngineError;

/// The environment variable that moves the installer home (tests always set it).
pub(crate) const HOME_ENV_VAR: &str = "THINKUBE_INSTALLER_HOME";

/// The installer home: `$THINKUBE_INSTALLER_HOME` when set and non-empty, else
/// `~/.thinkube-installer`.
///
/// Takes the two inputs explicitly so tests never depend on the process environment.
pub(crate) fn installer_home(
    env_value: Option<&std::ffi::OsStr>,
    user_home: Option<&Path>,
) -> Result<PathBuf, EngineError> {
    if let Some(value) = env_value.filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(value));
    }
    user_home
        .map(|home| home.join(".thinkube-installer"))
        .ok_or(EngineError::NoHome)
}

/// The installer home for this process, from its environment.
pub fn installer_home_from_process() -> Result<PathBuf, EngineError> {
    let env_value = std::env::var_os(HOME_ENV_VAR);
    let user_home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    installer_home(env_value.as_deref(), user_home.as_deref())
}

/// Where a saved copy (a log's "Save a copy" in the window) goes: the desktop's
/// download folder (`XDG_DOWNLOAD_DIR` of `user-dirs.dirs`) when it exists, else
/// `~/Downloads` when it exists, else the home folder itself.
///
/// Takes the inputs explicitly so tests never depend on the process environment.
pub(crate) fn downloads_folder(
    desktop: Option<&Path>,
    user_home: Option<&Path>,
) -> Result<PathBuf, EngineError> {
    if let Some(dir) = desktop.filter(|d| d.is_dir()) {
        return Ok(dir.to_path_buf());
    }
    let home = user_home.ok_or(EngineError::NoHome)?;
    let downloads = home.join("Downloads");
    Ok(if downloads.is_dir() {
        downloads
    } else {
        home.to_path_buf()
    })
}

/// [`downloads_folder`] for this process's user, from its environment.
pub fn downloads_folder_from_process() -> Result<PathBuf, EngineError> {
    let user_home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    downloads_folder(dirs::download_dir().as_deref(), user_home.as_deref())
}

/// A validated environment name: `default`, or letters, digits, `-` and `_`.
///
/// Validation happens here, once, so no other code can build a path from a name
/// that contains a separator or `..`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvName(Option<String>);

impl EnvName {
    /// The default environment, whose files live directly in the installer home.
    pub fn default_env() -> Self {
        Self(None)
    }

    /// Validates a name given with `--env`.
    pub fn parse(name: &str) -> Result<Self, EngineError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(EngineError::InvalidEnvName {
                name: name.to_string(),
            });
        }
        if name == "default" {
            return Ok(Self::default_env());
        }
        Ok(Self(Some(name.to_string())))
    }

    /// The name as shown to users and in `status --json`.
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or("default")
    }
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every path of one environment. Built once from the home and the environment name.
#[derive(Clone, Debug)]
pub struct Layout {
    pub home: PathBuf,
    pub env: EnvName,
    /// The environment's folder: the home itself for `default`.
    pub root: PathBuf,
}

impl Layout {
    pub fn new(home: impl Into<PathBuf>, env: EnvName) -> Self {
        let home = home.into();
        let root = match &env.0 {
            None => home.clone(),
            Some(name) => home.join("environments").join(name),
        };
        Self { home, env, root }
    }

    pub fn state_file(&self) -> PathBuf {
        self.root.join("deployment-state.json")
    }
    /// The changes committed since the state file was last written whole: one line
    /// per commit, replayed by every reader (see `state::journal`).
    pub fn journal_file(&self) -> PathBuf {
        self.root.join("deployment-state.journal")
    }
    /// The previous state file, kept each time the state file is written whole.
    pub fn backup_file(&self) -> PathBuf {
        self.root.join("deployment-state.json.bak")
    }
    /// The file a writer holds an exclusive lock on; never renamed over.
    pub(crate) fn lock_file(&self) -> PathBuf {
        self.root.join("deployment-state.lock")
    }
    /// Who holds the lock: written by the holder, read by everyone for messages.
    pub fn lock_info_file(&self) -> PathBuf {
        self.root.join("deployment-state.lock.info")
    }
    /// The append-only audit trail, one JSON object per line.
    pub fn events_file(&self) -> PathBuf {
        self.root.join("events.jsonl")
    }
    /// Finished runs, one file each.
    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }
    pub fn run_file(&self, run_id: &str) -> PathBuf {
        self.runs_dir().join(format!("{run_id}.json"))
    }
    /// Runs moved out of history by `cleanup`, and deployments archived by `clean-state`.
    pub(crate) fn archive_dir(&self) -> PathBuf {
        self.root.join("archive")
    }
    pub(crate) fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// The Ansible inventory the wizard writes; `clean-state` never touches it.
    pub fn inventory_file(&self) -> PathBuf {
        self.root.join("inventory.yaml")
    }
    /// What the deployment's inventory held when its last run began, secret-named
    /// values masked: to say what changed when the file no longer matches.
    pub fn deployment_inventory_file(&self) -> PathBuf {
        self.root.join("deployment-inventory.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn downloads_go_to_the_desktops_folder_then_downloads_then_home() {
        let home = tempfile::tempdir().unwrap();
        let desktop = home.path().join("Téléchargements");
        assert_eq!(
            downloads_folder(Some(&desktop), Some(home.path())).unwrap(),
            home.path(),
            "a folder that does not exist is passed over"
        );
        std::fs::create_dir(home.path().join("Downloads")).unwrap();
        assert_eq!(
            downloads_folder(None, Some(home.path())).unwrap(),
            home.path().join("Downloads")
        );
        std::fs::create_dir(&desktop).unwrap();
        assert_eq!(
            downloads_folder(Some(&desktop), Some(home.path())).unwrap(),
            desktop
        );
        assert!(matches!(
            downloads_folder(None, None),
            Err(EngineError::NoHome)
        ));
    }

    #[test]
    fn home_prefers_the_variable_then_the_user_home() {
        let user = Path::new("/home/u");
        assert_eq!(
            installer_home(Some(OsStr::new("/x")), Some(user)).unwrap(),
            PathBuf::from("/x")
        );
        assert_eq!(
            installer_home(Some(OsStr::new("")), Some(user)).unwrap(),
            PathBuf::from("/home/u/.thinkube-installer")
        );
        assert_eq!(
            installer_home(None, Some(user)).unwrap(),
            PathBuf::from("/home/u/.thinkube-installer")
        );
        assert!(matches!(
            installer_home(None, None),
            Err(EngineError::NoHome)
        ));
    }

    #[test]
    fn env_names_cannot_escape_the_home() {
        for bad in [
            "",
            "../x",
            "a/b",
            ".",
            "..",
            "a b",
            "x\\y",
            "é",
            &"a".repeat(65),
        ] {
            assert!(EnvName::parse(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["staging", "prod-2", "a_b", "X9"] {
            assert_eq!(EnvName::parse(good).unwrap().as_str(), good);
        }
        assert_eq!(EnvName::parse("default").unwrap(), EnvName::default_env());
    }

    #[test]
    fn named_environments_live_under_environments() {
        let layout = Layout::new("/h", EnvName::parse("lab").unwrap());
        assert_eq!(
            layout.state_file(),
            PathBuf::from("/h/environments/lab/deployment-state.json")
        );
        let default = Layout::new("/h", EnvName::default_env());
        assert_eq!(
            default.state_file(),
            PathBuf::from("/h/deployment-state.json")
        );
        assert_eq!(default.inventory_file(), PathBuf::from("/h/inventory.yaml"));
    }
}
