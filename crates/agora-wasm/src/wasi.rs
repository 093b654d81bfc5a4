//! The virtual WASI preview 1 a module sees: nothing of the host leaks in.
//!
//! | WASI facility | what the module gets |
//! |---|---|
//! | `args_get` | `module` then the manifest's `args` |
//! | `environ_get` | nothing |
//! | stdin | the input item |
//! | stdout | the output item (capped at [`MAX_OUTPUT`]) |
//! | stderr | captured (capped at [`MAX_STDERR`]) and quoted in error messages |
//! | files | no preopened directories, so no path can be opened |
//! | network | none (preview 1 has no socket creation; TCP, UDP and name lookup are denied) |
//! | clocks | wall clock fixed at [`FIXED_WALL_CLOCK`], monotonic clock fixed at 0 |
//! | `random_get` | a stream seeded from the job, shard and item index |

use agora_runtime::rng::Rng as SeededRng;
use rand_core::TryRng;
use std::convert::Infallible;
use std::time::Duration;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// Largest output item a module may write.
pub const MAX_OUTPUT: usize = 64 << 20;
/// Largest stderr captured.
pub const MAX_STDERR: usize = 64 << 10;
/// The time every module reads from the wall clock: 2000-01-01T00:00:00Z.
pub const FIXED_WALL_CLOCK: Duration = Duration::from_secs(946_684_800);

struct FixedWall;

impl HostWallClock for FixedWall {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        FIXED_WALL_CLOCK
    }
}

struct FixedMonotonic;

impl HostMonotonicClock for FixedMonotonic {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The runtime's seeded generator, as the RNG trait wasmtime-wasi expects.
struct Seeded(SeededRng);

impl TryRng for Seeded {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.0.next_u64() as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.0.next_u64())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

/// The pipes of one item's run, kept to read its output afterwards.
pub struct ItemPipes {
    /// The module's stdout: the output item.
    pub stdout: MemoryOutputPipe,
    /// The module's stderr.
    pub stderr: MemoryOutputPipe,
}

/// Builds the WASI context for one item.
pub fn item_ctx(args: &[String], input: &[u8], seed: u64) -> (WasiP1Ctx, ItemPipes) {
    let stdout = MemoryOutputPipe::new(MAX_OUTPUT);
    let stderr = MemoryOutputPipe::new(MAX_STDERR);
    let mut b = WasiCtxBuilder::new();
    b.arg("module")
        .args(args)
        .stdin(MemoryInputPipe::new(input.to_vec()))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .wall_clock(FixedWall)
        .monotonic_clock(FixedMonotonic)
        .secure_random(Seeded(SeededRng::new(seed)))
        .insecure_random(Seeded(SeededRng::new(seed ^ 0x5eed)))
        .insecure_random_seed(u128::from(seed))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    (b.build_p1(), ItemPipes { stdout, stderr })
}
