//! Metering: what a run cost, in the units the ledger pays for.
//!
//! - **wall time**: how long the run took;
//! - **device time**: for CPU classes, the CPU time the process consumed (all threads,
//!   from `/proc/self/stat`; wall time where that is unavailable); for GPU classes, the wall
//!   time the device was held;
//! - **fuel**: WebAssembly instructions, added by the wasm executor;
//! - **energy**: an estimate from a [`PowerModel`] (watts per busy device) × device time.
//!
//! Measured energy (NVML's cumulative counter on NVIDIA GPUs) plugs in through
//! [`EnergySource`]: a reader of a hardware counter implements it and replaces the model.

use agora_core::DeviceKind;
use agora_core::tx::Metering;
use std::time::Instant;

/// Linux's `USER_HZ`: the unit of `/proc/<pid>/stat` CPU times on every mainstream platform.
const CLOCK_TICKS_PER_SECOND: u64 = 100;

/// Turns device time into energy. Implemented by [`PowerModel`]; a hardware energy counter
/// (e.g. NVML `nvmlDeviceGetTotalEnergyConsumption`) would implement it too.
pub trait EnergySource: Send + Sync {
    /// Energy in milliwatt-hours for a run that used `device_ms` of device time over `wall_ms`.
    fn energy_mwh(&self, device_ms: u64, wall_ms: u64) -> u64;
}

/// An energy estimate from a fixed power draw per busy device.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PowerModel {
    /// What device time means for this device kind (CPU time or held wall time).
    pub device: DeviceKind,
    /// Average power of one busy device unit (one core, or one GPU), in watts.
    pub watts: f64,
}

impl PowerModel {
    /// One busy server core: about 10 W (a 250 W, 24-core socket at full load, plus its
    /// share of memory and fans).
    pub const CPU_CORE: PowerModel = PowerModel { device: DeviceKind::Cpu, watts: 10.0 };
    /// One datacenter GPU at typical inference load: about 300 W.
    pub const GPU: PowerModel = PowerModel { device: DeviceKind::Gpu, watts: 300.0 };

    /// The default model for a device kind.
    pub fn for_device(device: DeviceKind) -> Self {
        match device {
            DeviceKind::Cpu => Self::CPU_CORE,
            DeviceKind::Gpu => Self::GPU,
        }
    }
}

impl EnergySource for PowerModel {
    fn energy_mwh(&self, device_ms: u64, _wall_ms: u64) -> u64 {
        // W × ms = mJ; 1 mWh = 3,600 mJ.
        (self.watts * device_ms as f64 / 3600.0).round() as u64
    }
}

/// CPU time consumed so far by this process (all threads), if the platform reports it.
fn process_cpu_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start at state (field 3);
    // utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 1000 / CLOCK_TICKS_PER_SECOND)
}

/// Measures one run: started before the work, finished after it.
#[derive(Debug, Clone)]
pub struct Meter {
    device: DeviceKind,
    started: Instant,
    cpu_at_start: Option<u64>,
    fuel: u64,
}

impl Meter {
    /// Starts measuring a run on `device`.
    pub fn start(device: DeviceKind) -> Self {
        Meter { device, started: Instant::now(), cpu_at_start: process_cpu_ms(), fuel: 0 }
    }

    /// Adds WebAssembly fuel consumed by the run.
    pub fn add_fuel(&mut self, fuel: u64) {
        self.fuel = self.fuel.saturating_add(fuel);
    }

    /// The metering so far, with energy from `energy`.
    pub fn read(&self, energy: &dyn EnergySource) -> Metering {
        let wall_ms = self.started.elapsed().as_millis() as u64;
        let device_ms = match (self.device, self.cpu_at_start, process_cpu_ms()) {
            (DeviceKind::Cpu, Some(start), Some(now)) => now.saturating_sub(start),
            _ => wall_ms,
        };
        Metering { wall_ms, device_ms, fuel: self.fuel, energy_mwh: energy.energy_mwh(device_ms, wall_ms) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_model_units() {
        // 10 W for 360 s = 1 Wh = 1000 mWh.
        assert_eq!(PowerModel::CPU_CORE.energy_mwh(360_000, 360_000), 1000);
        assert_eq!(PowerModel::for_device(DeviceKind::Gpu), PowerModel::GPU);
    }

    #[test]
    fn meter_counts_cpu_work_and_fuel() {
        let mut m = Meter::start(DeviceKind::Cpu);
        m.add_fuel(7);
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed().as_millis() < 60 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        let r = m.read(&PowerModel::CPU_CORE);
        assert_eq!(r.fuel, 7);
        assert!(r.wall_ms >= 60);
        if process_cpu_ms().is_some() {
            // Busy-looping for 60 ms of wall time burns CPU time (at tick granularity).
            assert!(r.device_ms >= 10, "{r:?}");
        }
    }
}
