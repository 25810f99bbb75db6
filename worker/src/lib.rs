//! The worker: the Experiment 025 GAN trainer (Tetris engine, recordings,
//! models, training, metrics) and the loop that serves the coordinator.

pub mod bench;
pub mod checkpoint;
pub mod datagen;
pub mod dataset;
pub mod gan;
pub mod init;
pub mod kernels;
pub mod layers;
pub mod local;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod params;
pub mod recordings;
pub mod runner;
pub mod split;
pub mod tetris;
pub mod train;
