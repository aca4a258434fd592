//! A shared state backend: one environment's state and lock in Azure Blob Storage
//! (docs/shared-state.md), so that two machines operating the same cluster see one
//! state and never deploy at once.
//!
//! The local home stays the working copy: a writer takes the local lock, then the
//! shared lock (a lease on the lock blob, renewed in the background, its holder in
//! the blob's metadata), brings the local state up to the shared one (or pushes a
//! local commit the shared one never received), and after every local commit writes
//! the state blob whole, only if it is still the one it last wrote (`If-Match`).
//! Readers never take the lease.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use thinkube_blob::{BlobError, Client, Condition, ConnectionString, Credential, LeaseState};

use crate::error::{EngineError, Result};
use crate::paths::EnvName;
use crate::state::lock::{LockHolder, LockWait};
use crate::timestamp::Timestamp;

/// How long a lease lasts unless renewed: a killed writer's lock frees itself after
/// this long (the shortest Azure allows).
pub const LEASE_SECONDS: u32 = 15;
/// How often the lease is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// A writer whose last renewal is older than this stops before its next commit:
/// the lease may be gone before the write lands.
const RENEWAL_TRUSTED: Duration = Duration::from_secs(10);

/// A backend URL: `azblob://ACCOUNT/CONTAINER[/PREFIX][?endpoint=URL]`.
#[derive(Debug, Clone)]
pub struct Shared {
    pub url: String,
    location: thinkube_blob::Location,
    credential: Credential,
    /// Blob names start with this (the prefix and the environment).
    names: String,
}

/// What the lock blob says of its holder.
#[derive(Debug, Clone)]
pub struct SharedHolder {
    pub holder: LockHolder,
    /// When the lease was last renewed (by the holder's clock).
    pub renewed_at: Option<Timestamp>,
    pub leased: bool,
}

fn usage(url: &str, why: &str) -> EngineError {
    EngineError::Usage(format!(
        "`{url}` is not a state backend: {why}. Give `file` or azblob://ACCOUNT/CONTAINER[/PREFIX][?endpoint=URL]"
    ))
}

impl Shared {
    /// The backend `url` names for environment `env`: `None` for `file` (the local
    /// store). Credentials come from `AZURE_STORAGE_CONNECTION_STRING`,
    /// `AZURE_STORAGE_KEY` or `AZURE_STORAGE_SAS_TOKEN` (never stored).
    pub fn parse(
        url: &str,
        env: &EnvName,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>> {
        let url = url.trim();
        if url.is_empty() || url == "file" {
            return Ok(None);
        }
        let rest = url
            .strip_prefix("azblob://")
            .ok_or_else(|| usage(url, "it does not start with azblob://"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut endpoint = None;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "endpoint" => endpoint = Some(v.trim_end_matches('/').to_string()),
                other => return Err(usage(url, &format!("it has an unknown option `{other}`"))),
            }
        }
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        let account = parts
            .next()
            .ok_or_else(|| usage(url, "it names no account"))?;
        let container = parts
            .next()
            .ok_or_else(|| usage(url, "it names no container"))?;
        let prefix: Vec<&str> = parts.collect();
        let valid_account = (3..=24).contains(&account.len())
            && account
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid_account {
            return Err(usage(
                url,
                "the account name must be 3 to 24 lowercase letters and digits",
            ));
        }
        let valid_container = (3..=63).contains(&container.len())
            && container
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !container.starts_with('-')
            && !container.ends_with('-')
            && !container.contains("--");
        if !valid_container {
            return Err(usage(
                url,
                "the container name must be 3 to 63 lowercase letters, digits and single hyphens",
            ));
        }
        if let Some(e) = &endpoint
            && !(e.starts_with("https://")
                || e.starts_with("http://127.0.0.1")
                || e.starts_with("http://localhost"))
        {
            return Err(usage(
                url,
                "its endpoint must be https:// (plain http only on this machine, for Azurite)",
            ));
        }
        let (credential, from_string) = credential(vars)?;
        let endpoint = endpoint
            .or(from_string)
            .unwrap_or_else(|| format!("https://{account}.blob.core.windows.net"));
        let mut names: String = prefix.iter().map(|p| format!("{p}/")).collect();
        names.push_str(env.as_str());
        names.push('/');
        Ok(Some(Self {
            url: url.to_string(),
            location: thinkube_blob::Location {
                endpoint,
                account: account.to_string(),
                container: container.to_string(),
            },
            credential,
            names,
        }))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn client(&self) -> Result<Client> {
        Client::new(self.location.clone(), self.credential.clone()).map_err(|e| self.failed(e))
    }

    fn state_blob(&self) -> String {
        format!("{}deployment-state.json", self.names)
    }

    fn lock_blob(&self) -> String {
        format!("{}lock", self.names)
    }

    fn events_blob(&self) -> String {
        format!("{}events.jsonl", self.names)
    }

    fn run_blob(&self, run_id: &str) -> String {
        format!("{}runs/{run_id}.json", self.names)
    }

    /// `e`, saying which backend it came from.
    fn failed(&self, e: BlobError) -> EngineError {
        EngineError::Shared {
            url: self.url.clone(),
            reason: e.to_string(),
        }
    }

    /// The shared state's bytes and ETag, or `None` when there is none yet.
    pub fn read_state(&self) -> Result<Option<(Vec<u8>, String)>> {
        let blob = self
            .client()?
            .get(&self.state_blob())
            .map_err(|e| self.failed(e))?;
        Ok(blob.map(|b| (b.bytes, b.etag)))
    }

    /// Who holds the lock, as its blob says (`None`: nobody holds it now).
    pub fn holder(&self) -> Result<Option<SharedHolder>> {
        let props = self
            .client()?
            .properties(&self.lock_blob())
            .map_err(|e| self.failed(e))?;
        Ok(props
            .and_then(|p| {
                let holder = decode_holder(p.metadata.get("holder")?)?;
                let renewed_at = p
                    .metadata
                    .get("renewed")
                    .and_then(|t| Timestamp::parse(t).ok());
                Some(SharedHolder {
                    holder,
                    renewed_at,
                    leased: matches!(p.lease, LeaseState::Leased),
                })
            })
            .filter(|h| h.leased))
    }

    /// Takes the shared lock for `holder`, waiting as `wait` says; the container and
    /// the lock blob are created when missing.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        holder: &LockHolder,
        wait: LockWait,
        stopped: &dyn Fn() -> bool,
    ) -> Result<SharedLease> {
        let client = self.client()?;
        let lock = self.lock_blob();
        client.create_container().map_err(|e| self.failed(e))?;
        client
            .create_if_absent(&lock, false)
            .map_err(|e| self.failed(e))?;
        client
            .create_if_absent(&self.events_blob(), true)
            .map_err(|e| self.failed(e))?;
        let id = uuid::Uuid::new_v4().to_string();
        let deadline = match wait {
            LockWait::NoWait => Instant::now(),
            LockWait::Timeout(d) => Instant::now() + d,
        };
        loop {
            match client.acquire_lease(&lock, LEASE_SECONDS, &id) {
                Ok(()) => break,
                Err(BlobError::LeaseHeld { .. }) => {
                    if Instant::now() >= deadline {
                        return Err(EngineError::SharedLocked {
                            url: self.url.clone(),
                            holder: self.holder().ok().flatten().map(Box::new),
                        });
                    }
                    if stopped() {
                        return Err(EngineError::StoppedWaiting {
                            path: self.url.clone().into(),
                        });
                    }
                    // Polled: a lease has no notification of its release.
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(self.failed(e)),
            }
        }
        let metadata = holder_metadata(holder);
        if let Err(e) = client.set_metadata(&lock, &metadata, Some(&id)) {
            let _ = client.release_lease(&lock, &id);
            return Err(self.failed(e));
        }
        Ok(SharedLease::start(
            Arc::clone(self),
            client,
            id,
            holder.clone(),
        ))
    }
}

/// The credential the environment gives, and the blob endpoint a connection string
/// names.
fn credential(vars: &dyn Fn(&str) -> Option<String>) -> Result<(Credential, Option<String>)> {
    let bad = |e: BlobError| EngineError::Usage(e.to_string());
    if let Some(text) = vars("AZURE_STORAGE_CONNECTION_STRING") {
        let c = ConnectionString::parse(&text).map_err(bad)?;
        let credential = c.credential.ok_or_else(|| {
            EngineError::Usage(
                "AZURE_STORAGE_CONNECTION_STRING has neither AccountKey nor SharedAccessSignature"
                    .into(),
            )
        })?;
        return Ok((credential, c.blob_endpoint));
    }
    if let Some(key) = vars("AZURE_STORAGE_KEY") {
        return Ok((Credential::shared_key(&key).map_err(bad)?, None));
    }
    if let Some(sas) = vars("AZURE_STORAGE_SAS_TOKEN") {
        return Ok((Credential::sas(&sas).map_err(bad)?, None));
    }
    Err(EngineError::Usage(
        "a shared backend needs credentials: set AZURE_STORAGE_KEY (the account's access key), AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_SAS_TOKEN (they are never stored)".into(),
    ))
}

/// The holder, as metadata values must be: ASCII (base64 of its JSON).
fn holder_metadata(holder: &LockHolder) -> BTreeMap<String, String> {
    let json = serde_json::to_vec(holder).unwrap_or_default();
    BTreeMap::from([
        ("holder".to_string(), BASE64.encode(json)),
        ("renewed".to_string(), Timestamp::now().to_string()),
    ])
}

fn decode_holder(text: &str) -> Option<LockHolder> {
    serde_json::from_slice(&BASE64.decode(text).ok()?).ok()
}

/// A held shared lock: renewed on a thread of its own until dropped, then released.
pub(crate) struct SharedLease {
    shared: Arc<Shared>,
    client: Client,
    id: String,
    /// When the lease was last renewed, or why it was lost.
    health: Arc<Mutex<std::result::Result<Instant, String>>>,
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
    /// The ETag of the state blob as this writer last read or wrote it (`None`: none).
    etag: Option<String>,
}

impl SharedLease {
    fn start(shared: Arc<Shared>, client: Client, id: String, holder: LockHolder) -> Self {
        let health = Arc::new(Mutex::new(Ok(Instant::now())));
        let (stop, stopped) = mpsc::channel::<()>();
        let renewer = {
            let (shared, health, id) = (Arc::clone(&shared), Arc::clone(&health), id.clone());
            std::thread::Builder::new()
                .name("lease-renewer".into())
                .spawn(move || renew(&shared, &id, &holder, &health, &stopped))
                .ok()
        };
        Self {
            shared,
            client,
            id,
            health,
            stop: Some(stop),
            renewer,
            etag: None,
        }
    }

    /// Ok while the lease can be trusted to outlast the next write.
    fn check(&self) -> Result<()> {
        let health = self
            .health
            .lock()
            .map(|h| h.clone())
            .unwrap_or(Err("the renewer failed".into()));
        let reason = match health {
            Ok(at) if at.elapsed() < RENEWAL_TRUSTED => return Ok(()),
            Ok(at) => format!("it was last renewed {} s ago", at.elapsed().as_secs()),
            Err(reason) => reason,
        };
        Err(EngineError::SharedLockLost {
            url: self.shared.url.clone(),
            reason,
        })
    }

    /// The shared state as this writer found it: bytes and ETag.
    pub(crate) fn read(&mut self) -> Result<Option<Vec<u8>>> {
        let blob = self
            .client
            .get(&self.shared.state_blob())
            .map_err(|e| self.shared.failed(e))?;
        self.etag = blob.as_ref().map(|b| b.etag.clone());
        Ok(blob.map(|b| b.bytes))
    }

    /// Writes `bytes` as the shared state, only over the one this writer last read
    /// or wrote: a newer state (another writer, after this one's lease was broken)
    /// is never overwritten.
    pub(crate) fn write(&mut self, bytes: Vec<u8>, events: Vec<u8>) -> Result<()> {
        self.write_state(bytes)?;
        // The state is the record; the trail beside it is best effort, as the local
        // one is (a gap is said in the log).
        if !events.is_empty()
            && let Err(e) = self.client.append(&self.shared.events_blob(), events)
        {
            tracing::warn!(error = %e, "cannot append to the shared event trail");
        }
        Ok(())
    }

    /// The ids of the runs kept beside the shared state.
    pub(crate) fn run_ids(&self) -> Result<Vec<String>> {
        let prefix = format!("{}runs/", self.shared.names);
        let names = self
            .client
            .list(&prefix)
            .map_err(|e| self.shared.failed(e))?;
        Ok(names
            .iter()
            .filter_map(|n| n.strip_prefix(&prefix)?.strip_suffix(".json"))
            .map(str::to_string)
            .collect())
    }

    /// A run's record kept beside the shared state.
    pub(crate) fn get_run(&self, run_id: &str) -> Result<Option<Vec<u8>>> {
        let blob = self
            .client
            .get(&self.shared.run_blob(run_id))
            .map_err(|e| self.shared.failed(e))?;
        Ok(blob.map(|b| b.bytes))
    }

    /// Writes a finished run's record beside the state (`runs/ID.json`).
    pub(crate) fn put_run(&self, run_id: &str, bytes: Vec<u8>) -> Result<()> {
        self.check()?;
        self.client
            .put(&self.shared.run_blob(run_id), bytes, Condition::Any)
            .map(drop)
            .map_err(|e| self.shared.failed(e))
    }

    fn write_state(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.check()?;
        let condition = match &self.etag {
            Some(etag) => Condition::Match(etag),
            None => Condition::Absent,
        };
        match self.client.put(&self.shared.state_blob(), bytes, condition) {
            Ok(etag) => {
                self.etag = Some(etag);
                Ok(())
            }
            Err(BlobError::ConditionNotMet { .. }) => Err(EngineError::SharedLockLost {
                url: self.shared.url.clone(),
                reason: "the shared state changed since this writer last wrote it (its lease was broken or expired, and another writer went on); nothing was overwritten".into(),
            }),
            Err(e) => Err(self.shared.failed(e)),
        }
    }
}

/// The renewer: every few seconds, the lease again and the holder's `renewed` time.
fn renew(
    shared: &Shared,
    id: &str,
    holder: &LockHolder,
    health: &Mutex<std::result::Result<Instant, String>>,
    stopped: &mpsc::Receiver<()>,
) {
    let client = match shared.client() {
        Ok(c) => c,
        Err(e) => {
            if let Ok(mut h) = health.lock() {
                *h = Err(e.to_string());
            }
            return;
        }
    };
    let lock = shared.lock_blob();
    loop {
        match stopped.recv_timeout(RENEW_EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let result = client
            .renew_lease(&lock, id)
            .and_then(|()| client.set_metadata(&lock, &holder_metadata(holder), Some(id)));
        let Ok(mut h) = health.lock() else { return };
        match result {
            Ok(()) => *h = Ok(Instant::now()),
            Err(BlobError::LeaseLost { code, .. }) => {
                *h = Err(format!(
                    "its lease on the lock was lost ({code}): broken by hand, or expired while the storage could not be reached"
                ));
                return;
            }
            // Unreachable for a moment: tried again at the next turn; `check` stops
            // the writer once the last renewal is too old.
            Err(e) => tracing::warn!(error = %e, "cannot renew the shared lock's lease"),
        }
    }
}

impl Drop for SharedLease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        // Best effort: an unreleased lease expires by itself.
        let _ = self
            .client
            .release_lease(&self.shared.lock_blob(), &self.id);
    }
}
