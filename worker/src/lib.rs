//! The worker: the Experiment 025 GAN trainer (Tetris engine, recordings,
//! models, training, metrics) and the loop that serves the coordinator.

#![warn(missing_docs)]

// Data
pub mod datagen; // recordings made by the built-in engine from a seed
pub mod dataset; // a trial's dataset by reference, loaded once per process
pub mod recordings; // `{index}.npy` board sequences on disk, checked
pub mod split; // one split's items held in memory as class maps
pub mod tetris; // the Tetris engine that made the notebook's data

// Network
pub mod init; // init schemes: PyTorch default, Kaiming variants, smart
pub mod kernels; // fused CPU kernels (conv, BatchNorm+ReLU, bias, pool)
pub mod layers; // Conv, BatchNorm, Linear as the models compose them
pub mod model; // the generator and the discriminator
pub mod tensors; // a network's named tensors in PyTorch state_dict order

// Training
pub mod checkpoint; // a trainer's whole state as one safetensors blob
pub mod device; // `cpu` or `cuda:N`
pub mod gan; // one GAN training step: losses, gradients, Adam
pub mod metrics; // the notebook's evaluation metrics over a split
pub mod optim; // Adam as PyTorch computes it, with state to checkpoint
pub mod samples; // predictions on fixed test items, beside the true boards
pub mod train; // a trial's epochs: shuffling, steps, evaluation

#[cfg(test)]
mod testing; // test helpers: two computations held to the same numbers

// Serving
pub mod bench; // `worker bench`: epochs timed beside PyTorch
pub mod runner; // `worker run`: leases, trains and reports to a coordinator
pub mod standalone; // `worker train`: one trial without a coordinator
