//! Which device the executors compute on.

use candle_core::Device;

/// The first CUDA GPU when built with the `cuda` feature and one is present, else the CPU.
pub fn device() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(d) = Device::cuda_if_available(0) {
        return d;
    }
    Device::Cpu
}

/// The metering device kind of `device`.
pub fn device_kind(device: &Device) -> agora_core::DeviceKind {
    if device.is_cpu() { agora_core::DeviceKind::Cpu } else { agora_core::DeviceKind::Gpu }
}
