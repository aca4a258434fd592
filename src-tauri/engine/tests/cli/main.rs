//! Integration tests of `thinkube-deploy` and the engine's store: each test gets a
//! fresh installer home and runs the real binary.

mod child;
mod common;

mod bad_input;
mod compile_fail;
mod crash;
mod deploy;
mod history;
mod locking;
mod migration;
mod permissions;
mod recover;
mod schema;
mod session;
mod status;
mod trail;
