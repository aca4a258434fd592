//! This build has no shared state backend (built without the `azblob` feature):
//! only `file` is accepted. No value of these types can exist.

use crate::error::{EngineError, Result};
use crate::paths::EnvName;
use crate::state::lock::{LockHolder, LockWait};
use crate::timestamp::Timestamp;

pub const LEASE_SECONDS: u32 = 15;

#[derive(Debug, Clone)]
pub enum Shared {}

#[derive(Debug, Clone)]
pub struct SharedHolder {
    pub holder: LockHolder,
    pub renewed_at: Option<Timestamp>,
    pub leased: bool,
}

pub(crate) enum SharedLease {}

impl Shared {
    pub fn parse(
        url: &str,
        _env: &EnvName,
        _vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>> {
        match url.trim() {
            "" | "file" => Ok(None),
            _ => Err(EngineError::Usage(format!(
                "`{url}`: this build of thinkube-deploy has no shared state backend (built without the `azblob` feature); use `file`"
            ))),
        }
    }
    pub fn url(&self) -> &str {
        match *self {}
    }
    pub fn read_state(&self) -> Result<Option<(Vec<u8>, String)>> {
        match *self {}
    }
    pub fn holder(&self) -> Result<Option<SharedHolder>> {
        match *self {}
    }
    pub(crate) fn acquire(
        self: &std::sync::Arc<Self>,
        _holder: &LockHolder,
        _wait: LockWait,
        _stopped: &dyn Fn() -> bool,
    ) -> Result<SharedLease> {
        match **self {}
    }
}

impl SharedLease {
    pub(crate) fn read(&mut self) -> Result<Option<Vec<u8>>> {
        match *self {}
    }
    pub(crate) fn write(&mut self, _bytes: Vec<u8>, _events: Vec<u8>) -> Result<()> {
        match *self {}
    }
    pub(crate) fn run_ids(&self) -> Result<Vec<String>> {
        match *self {}
    }
    pub(crate) fn get_run(&self, _run_id: &str) -> Result<Option<Vec<u8>>> {
        match *self {}
    }
    pub(crate) fn put_run(&self, _run_id: &str, _bytes: Vec<u8>) -> Result<()> {
        match *self {}
    }
}
