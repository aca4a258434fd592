//! The deployment-state engine of the Thinkube installer.
//!
//! It knows nothing of windows: the desktop app and the headless `thinkube-deploy`
//! both call it. See `docs/architecture.md` for the code map and invariants.
//!
//! - [`model`]: the state file's format; [`lifecycle`]: the only legal transitions.
//! - [`store`]: durable, locked storage; [`fsops`]: its file operations; [`lock`].
//! - [`migrate`]: older formats; [`ops`]: write operations; [`status`], [`history`]: views.
//! - [`session`]: a run (deploy, resume, retry) as the runner drives it.
//! - [`cli`]: the command line.

pub mod builtin;
pub mod cli;
pub mod config;
pub mod deploy;
pub mod error;
pub mod facts;
pub mod fsops;
pub mod gates;
pub mod history;
pub mod lifecycle;
pub mod lock;
pub mod migrate;
pub mod model;
pub mod ops;
pub mod outline;
pub mod paths;
pub mod plan;
pub mod readiness;
pub mod retry;
pub mod runner;
pub mod schema;
pub mod session;
pub mod setup;
pub mod status;
pub mod store;
pub mod timestamp;
pub mod validate;

pub use error::{EngineError, Result};
