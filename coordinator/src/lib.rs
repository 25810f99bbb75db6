//! The coordinator: sweep files, durable storage on Postgres or SQLite, the
//! gRPC services that lease trials to workers and answer users, results by
//! configuration, and (feature `one-machine`, on by default) a whole sweep
//! on one machine with local worker processes.

#![warn(missing_docs)]

// Sweeps
pub mod early_stopping; // the median and ASHA rules, by configuration
pub mod search; // submission, bayes proposals and early stops as results arrive
pub mod spec; // sweep files: parsing with locations, expansion into trials

// Storage and scheduling
pub mod aggregates; // per configuration and epoch, running summaries for curves
pub mod blocks; // a finished trial's epochs, eight to a stored row
pub mod lease; // the lease rule: policy, the long-poll wait, the reaper
pub mod packed; // one epoch's metrics as one stored value
pub mod store; // every SQL statement, on Postgres or SQLite

// Serving
pub mod auth; // bearer tokens, roles and the gate every call passes
pub mod convert; // stored rows to proto messages
pub mod dashboard; // the web dashboard: a page, its JSON API and live events
pub mod error; // the one error type and its mapping to gRPC statuses
pub mod limits; // bounds on everything that arrives from outside
pub mod server; // the gRPC server with health and reflection
pub mod service; // the worker and sweep services, one handler shape
pub mod telemetry; // Prometheus metrics: calls, reports, leases, queues, workers

// Results
pub mod report; // tables, CSV and JSON as users read them
pub mod results; // summaries, t-tests and curves by configuration
pub mod stats; // Welch's t-test and summaries, equal to scipy
pub mod tensorboard; // event files: `coordinator export --tensorboard`

// Workers started for the coordinator (these link the trainer)
#[cfg(feature = "one-machine")]
pub mod one_machine; // `coordinator run`: a whole sweep with local workers
#[cfg(feature = "one-machine")]
pub mod slurm; // `coordinator slurm`: an sbatch job array of workers

// Test support
#[cfg(feature = "test-support")]
pub mod testing; // fresh test databases and an in-process server
