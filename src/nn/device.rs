//! Device names on the command line.
use anyhow::{bail, Result};
use tch::Device;

/// Parses `cpu`, `cuda` (or `gpu`), `cuda:N` or `auto` (CUDA when available).
///
/// Errors: CUDA asked for but not available to libtorch, a device index out of range, or any
/// other name.
pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available()),
        "cuda" | "gpu" => {
            if !tch::Cuda::is_available() {
                bail!("--device cuda: no CUDA device is available to libtorch");
            }
            Ok(Device::Cuda(0))
        }
        _ => match s
            .strip_prefix("cuda:")
            .and_then(|i| i.parse::<usize>().ok())
        {
            Some(i) if tch::Cuda::is_available() && (i as i64) < tch::Cuda::device_count() => {
                Ok(Device::Cuda(i))
            }
            Some(i) => bail!("--device cuda:{i}: no such CUDA device"),
            None => bail!("--device {s}: expected cpu, cuda, cuda:N or auto"),
        },
    }
}
