//! Integration tests of `thinkube-deploy` and the engine's store: each test gets a
//! fresh installer home and runs the real binary.

mod child;
mod common;

mod bad_input;
mod compile_fail;
mod completion;
mod config;
mod configure;
mod contention;
mod crash;
mod deploy;
mod disk_full;
mod facts;
mod history;
mod hostile;
mod journal;
mod k0rdent;
mod kill_loop;
mod layering;
mod locking;
mod migration;
mod model;
mod permissions;
mod power_loss;
mod recover;
mod schema;
mod session;
mod shared_state;
mod simfs;
mod ssh;
mod status;
mod thinkube;
mod trail;
