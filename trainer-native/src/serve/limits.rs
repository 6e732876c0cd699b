//! What the embedded host bounds, so that no request can take the host or another request down:
//! body size per route (counted as it streams, chunked or not, before a component sees a byte),
//! the bearer token of authenticated components (checked before the body is read), linear memory
//! per instance, CPU time per request (epoch interruption), a deadline per request, how many
//! requests run at once (others wait briefly, then get a 503 with `Retry-After`), and how long a
//! client may take to send its headers.
//!
//! Every refusal is a JSON problem: 413 `body_too_large`, 401 `unauthorized`, 503
//! `memory_limit`, `cpu_time_exceeded` or `busy`, 504 `deadline_exceeded`.

use std::time::Duration;

use sha2::Digest as _;
use subtle::ConstantTimeEq;
use wasmtime::ResourceLimiter;

/// How often the engine's epoch advances: the granularity of the CPU-time budget, and how often
/// a busy component yields its thread so that other requests (and `/health`) keep answering.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Routes whose request body is an image (or an upload of one); every other route takes JSON.
const IMAGE_ROUTES: &[&str] = &["/classify", "/uploads"];

/// The host's limits. `Default` is what `exposr-trainer serve` uses.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest body of a JSON route.
    pub json_body: usize,
    /// Largest body of an image route (`/classify`, `/uploads`).
    pub image_body: usize,
    /// Largest linear memory (all memories together) of one component instance.
    pub memory: usize,
    /// CPU time one request's component may spend running WebAssembly.
    pub cpu_time: Duration,
    /// Wall time for a whole request: reading its body, running the component, its response.
    pub deadline: Duration,
    /// Requests served at once; more wait up to `queue_wait`.
    pub concurrency: usize,
    /// How long a request waits for a free slot before a 503.
    pub queue_wait: Duration,
    /// Time a client has to send a request's headers (slow-loris connections are closed).
    pub header_read: Duration,
    /// Most header fields in one request.
    pub max_headers: usize,
    /// Largest header section in bytes (hyper's read buffer).
    pub header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            json_body: 256 * 1024,
            image_body: 10 * 1024 * 1024,
            memory: 512 * 1024 * 1024,
            cpu_time: Duration::from_secs(10),
            deadline: Duration::from_secs(30),
            concurrency: 32,
            queue_wait: Duration::from_secs(2),
            header_read: Duration::from_secs(10),
            max_headers: 64,
            header_bytes: 16 * 1024,
        }
    }
}

impl Limits {
    /// The largest body accepted on `path`.
    pub fn body_limit(&self, path: &str) -> usize {
        if IMAGE_ROUTES.contains(&path) {
            self.image_body
        } else {
            self.json_body
        }
    }

    /// Epoch ticks of WebAssembly a request may run.
    pub fn cpu_ticks(&self) -> u64 {
        (self.cpu_time.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
    }
}

/// How much of a too-large body the host reads and drops before answering 413: four times the
/// route's limit, at most 64 MiB. Past it the host answers at once and closes the connection.
pub fn drain_allowance(limit: usize) -> u64 {
    (limit as u64).saturating_mul(4).min(64 << 20)
}

/// Whether `header` (the Authorization value) carries `expected` as a bearer token. Both sides are
/// hashed first, so the constant-time comparison is over equal lengths and timing reveals neither
/// how much of a guess was right nor how long the token is.
pub fn bearer_matches(header: Option<&str>, expected: &str) -> bool {
    let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    let given = sha2::Sha256::digest(token.as_bytes());
    let wanted = sha2::Sha256::digest(expected.as_bytes());
    !expected.is_empty() && bool::from(given.ct_eq(&wanted))
}

/// What stopped an instance, recorded by the limiter and the epoch callback so that the host can
/// answer with the right problem rather than a bare trap.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing: the component ran to its end, or failed on its own.
    #[default]
    No,
    /// It asked for more memory than `Limits::memory`.
    Memory,
    /// It ran WebAssembly for longer than `Limits::cpu_time`.
    CpuTime,
}

/// Per-instance accounting: the memory limiter and the CPU ticks left.
#[derive(Debug)]
pub struct Budget {
    memory: usize,
    /// Ticks of running WebAssembly left before the request is stopped.
    pub ticks_left: u64,
    /// Why the instance was stopped, if it was.
    pub stopped: Stopped,
}

impl Budget {
    /// A fresh budget from the host's limits.
    pub fn new(limits: &Limits) -> Self {
        Self {
            memory: limits.memory,
            ticks_left: limits.cpu_ticks(),
            stopped: Stopped::No,
        }
    }

    /// One epoch tick passed while WebAssembly ran: `false` once the budget is spent.
    pub fn tick(&mut self) -> bool {
        self.ticks_left = self.ticks_left.saturating_sub(1);
        if self.ticks_left == 0 {
            self.stopped = Stopped::CpuTime;
        }
        self.ticks_left > 0
    }
}

impl ResourceLimiter for Budget {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            self.stopped = Stopped::Memory;
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
        // Tables hold function references; a million entries is far beyond any of ours.
        Ok(desired <= 1 << 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_routes_take_images_and_the_rest_json() {
        let l = Limits::default();
        assert_eq!(l.body_limit("/classify"), 10 * 1024 * 1024);
        assert_eq!(l.body_limit("/uploads"), 10 * 1024 * 1024);
        assert_eq!(l.body_limit("/train"), 256 * 1024);
        assert_eq!(l.body_limit("/classify/x"), 256 * 1024);
        assert_eq!(l.cpu_ticks(), 1000);
    }

    #[test]
    fn the_bearer_check_accepts_only_the_exact_token() {
        assert!(bearer_matches(Some("Bearer s3cret"), "s3cret"));
        for wrong in [
            None,
            Some("s3cret"),
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("bearer s3cret"),
            Some("Bearer "),
        ] {
            assert!(!bearer_matches(wrong, "s3cret"), "{wrong:?}");
        }
        assert!(!bearer_matches(Some("Bearer "), ""), "no token configured");
    }

    #[test]
    fn the_budget_stops_at_memory_and_cpu_limits() {
        let mut b = Budget::new(&Limits {
            memory: 1000,
            cpu_time: EPOCH_TICK * 2,
            ..Limits::default()
        });
        assert!(b.memory_growing(0, 1000, None).unwrap());
        assert_eq!(b.stopped, Stopped::No);
        assert!(!b.memory_growing(1000, 1001, None).unwrap());
        assert_eq!(b.stopped, Stopped::Memory);
        assert!(b.tick());
        assert!(!b.tick());
        assert_eq!(b.stopped, Stopped::CpuTime);
    }
}
