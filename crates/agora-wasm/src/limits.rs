//! Resource caps: linear memory through a [`ResourceLimiter`], wall-clock time through a
//! thread that advances the engine's epoch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{Engine, ResourceLimiter};

/// Refuses memory growth beyond a cap and remembers the refused request, so the resulting
/// trap can be reported as what it is.
#[derive(Debug)]
pub struct MemoryCap {
    max_bytes: usize,
    /// The size of the first refused growth request, if any.
    pub refused: Option<usize>,
}

impl MemoryCap {
    /// Caps linear memory at `mib` MiB.
    pub fn new(mib: u32) -> Self {
        MemoryCap { max_bytes: (mib as usize) << 20, refused: None }
    }
}

/// Most table elements a module may have (function tables of real programs are far smaller).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.refused.get_or_insert(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// How often the epoch advances; the wall-clock cap is enforced to this granularity.
pub const TICK: Duration = Duration::from_millis(10);

/// A background thread that advances an engine's epoch every [`TICK`] until dropped.
#[derive(Debug)]
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine`.
    pub fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("agora-wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawn the epoch ticker thread");
        EpochTicker { stop, handle: Some(handle) }
    }

    /// The epoch deadline (in ticks from now) that enforces `limit`.
    pub fn ticks_for(limit: Duration) -> u64 {
        (limit.as_nanos().div_ceil(TICK.as_nanos()) as u64).max(1)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
