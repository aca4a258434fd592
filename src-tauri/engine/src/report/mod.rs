//! Read-only views of the stored state: the status of a deployment and its history.

pub mod completion;
pub mod history;
pub mod log;
pub mod plans;
pub mod status;
