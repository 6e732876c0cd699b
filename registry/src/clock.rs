//! [`Clock`]: where the registry gets the time, its pauses and its fresh ids.
//!
//! Leases, retry delays, snapshot and job ids all read a clock. Production code uses
//! [`SystemClock`]; the deterministic simulation (`conformance` feature) gives every actor a
//! virtual clock with its own offset, so that a seed replays the same run, skewed clocks included.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A pause, as [`Clock::sleep`] returns it.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The time, pauses and fresh ids the registry uses.
pub trait Clock: fmt::Debug + Send + Sync {
    /// The current time, as this process sees it (clocks of different machines disagree).
    fn now(&self) -> DateTime<Utc>;

    /// A pause of `pause`.
    fn sleep(&self, pause: Duration) -> Sleep;

    /// A fresh UUIDv7 stamped with [`Clock::now`]; its random bits come from `fastrand`, which
    /// a simulation seeds.
    fn new_id(&self) -> Uuid {
        let ms = self.now().timestamp_millis().max(0) as u64;
        let mut random = [0u8; 10];
        fastrand::fill(&mut random);
        uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid()
    }
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, pause: Duration) -> Sleep {
        #[cfg(not(target_arch = "wasm32"))]
        {
            Box::pin(tokio::time::sleep(pause))
        }
        // A WebAssembly component handles one request at a time: blocking here blocks no one else.
        #[cfg(target_arch = "wasm32")]
        {
            std::thread::sleep(pause);
            Box::pin(std::future::ready(()))
        }
    }

    fn new_id(&self) -> Uuid {
        // Monotonic within a millisecond, unlike the default.
        Uuid::now_v7()
    }
}
