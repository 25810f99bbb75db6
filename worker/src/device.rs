//! The devices a worker trains on, by name: `cpu` or `cuda:N`.

use anyhow::{Context, Result};
use candle_core::Device;

/// Opens `cpu` or `cuda:N`; CUDA needs a build with `--features cuda`.
pub fn parse(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = name
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .with_context(|| format!("unknown device {name:?}; expected cpu or cuda:N"))?;
            Device::new_cuda(ordinal).with_context(|| {
                if cfg!(feature = "cuda") {
                    format!("opening {name}: no usable NVIDIA GPU or driver")
                } else {
                    format!("opening {name} (the worker must be built with --features cuda)")
                }
            })
        }
    }
}
