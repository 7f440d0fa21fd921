//! Time for the limits: one injected clock, so unit tests move time by hand and nothing reads a
//! global. Wall-clock milliseconds, because period bounds and grants come from the plane in Unix
//! time; a wall-clock jump shifts a lease's validity by the jump (the plane's own TTL still
//! bounds it).

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};

pub trait Clock: Send + Sync + Debug {
    fn unix_ms(&self) -> i64;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_ms(&self) -> i64 {
        crate::auth::now_unix_ms()
    }
}

/// A clock tests set and advance explicitly.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        Self {
            now_ms: AtomicI64::new(now_ms),
        }
    }

    pub fn set(&self, now_ms: i64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance(&self, ms: i64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn unix_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}
