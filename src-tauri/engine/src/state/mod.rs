//! The stored state and its durable change. Nothing here starts a process or reads
//! the outside world: `run` drives these types, never the other way round.

pub mod bounds;
pub mod fact_keys;
pub mod follow;
pub mod fsops;
pub(crate) mod journal;
pub mod lifecycle;
pub mod lock;
pub mod migrate;
pub mod model;
pub mod ops;
pub mod schema;
#[cfg(feature = "azblob")]
pub mod shared;
#[cfg(not(feature = "azblob"))]
#[path = "shared_off.rs"]
pub mod shared;
pub mod store;
