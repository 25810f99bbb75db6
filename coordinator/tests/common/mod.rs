//! The shared test support of `coordinator::testing`.
#![allow(unused_imports)]

pub use coordinator::testing::*;
