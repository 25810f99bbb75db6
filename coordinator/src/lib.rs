//! The coordinator: sweep files, durable storage on Postgres or SQLite, and
//! the gRPC services that lease trials to workers and answer users.

pub mod convert;
pub mod error;
pub mod local;
pub mod report;
pub mod results;
pub mod server;
pub mod service;
pub mod spec;
pub mod stats;
pub mod store;
#[cfg(feature = "test-support")]
pub mod testing;
