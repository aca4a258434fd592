//! Making a run happen: a deploy, resume or retry prepared from a plan and a stored
//! state, its gates, the processes it starts, and the session that records each
//! step's outcome through `state`.

pub mod deploy;
pub mod gates;
pub(crate) mod inventory;
pub mod plan_check;
pub mod requirements;
pub mod runner;
pub mod session;
pub mod setup;
pub mod source;
mod spawn;
pub mod tally;
