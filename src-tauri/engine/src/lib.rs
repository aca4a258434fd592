//! The deployment-state engine of the Thinkube installer.
//!
//! It knows nothing of windows: the desktop app and the headless `thinkube-deploy`
//! both call it. `docs/architecture.md` has the code map and the invariants. The
//! rooms, in the order data flows through them:
//!
//! - [`plan`]: what should run: the plan file, its flags, the built-in plans, outlines.
//! - [`state`]: the stored state and its durable change: the format ([`state::model`]),
//!   the only legal transitions ([`state::lifecycle`]), locked storage
//!   ([`state::store`], [`state::fsops`], [`state::lock`]), write operations
//!   ([`state::ops`]) and older formats ([`state::migrate`]).
//! - [`run`]: making a run happen: deploy, resume and retry ([`run::deploy`]), the
//!   session that records it ([`run::session`]), gates, the process runner, setup.
//! - [`facts`]: the outside world's truth: recorded facts, validation, readiness.
//! - [`report`]: read-only views: status and history.
//! - [`cli`]: the command line: arguments, one engine call, rendering.
//!
//! Beside them: [`config`] (the environment's configuration and inventory),
//! [`error`], [`paths`], [`timestamp`], [`retry`] (the one retry policy) and
//! [`secrets`] (the one secrets policy).

pub mod cli;
pub mod config;
pub mod error;
pub mod facts;
pub mod paths;
pub mod plan;
pub mod report;
pub mod retry;
pub mod run;
pub mod secrets;
pub mod state;
pub mod timestamp;
pub(crate) mod yaml;

pub use error::{EngineError, Result};
