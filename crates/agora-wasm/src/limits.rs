//! Resource caps: memory and tables, all counted together, through a [`ResourceLimiter`], wall-clock time through a
//! thread that advances the engine's epoch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{Engine, ResourceLimiter};

/// Refuses growth beyond a cap on everything a module can allocate, counted together: the
/// bytes of all its linear memories and the elements of all its tables. (Counted per memory,
/// a module with many memories — multi-memory — could take many times the cap; the engine also
/// refuses multi-memory modules outright.) Remembers the first refused memory request, so the
/// resulting trap can be reported as what it is.
#[derive(Debug)]
pub struct MemoryCap {
    max_bytes: usize,
    memory_bytes: usize,
    table_elements: usize,
    /// The size of the first refused growth request, if any.
    pub refused: Option<usize>,
}

impl MemoryCap {
    /// Caps all linear memory together at `mib` MiB.
    pub fn new(mib: u32) -> Self {
        MemoryCap { max_bytes: (mib as usize) << 20, memory_bytes: 0, table_elements: 0, refused: None }
    }
}

/// Most table elements a module may have across all its tables (function tables of real
/// programs are far smaller).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Most tables one instance may define.
const MAX_TABLES: usize = 4;

/// `total` with one item grown from `current` to `desired`, if that stays within `max`.
fn regrow(total: usize, current: usize, desired: usize, max: usize) -> Option<usize> {
    total.checked_sub(current)?.checked_add(desired).filter(|&t| t <= max)
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match regrow(self.memory_bytes, current, desired, self.max_bytes) {
            Some(total) => {
                self.memory_bytes = total;
                Ok(true)
            }
            None => {
                self.refused.get_or_insert(desired);
                Ok(false)
            }
        }
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match regrow(self.table_elements, current, desired, MAX_TABLE_ELEMENTS) {
            Some(total) => {
                self.table_elements = total;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        MAX_TABLES
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
