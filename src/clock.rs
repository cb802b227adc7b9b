//! Time, read only at the edges: domain code takes `now` as a parameter, and the server reads
//! it from the `Clock` in its state, so that tests can move time instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, from the system clock (the CLI's time).
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, from the system clock (the unit of OvenMediaEngine's
/// SignedPolicy times).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The server's clock: the system's in production; a manual one in tests, shared by every
/// clone (all instances of a test and the test itself see the same time).
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    pub fn system() -> Self {
        Self(None)
    }

    /// A clock that stands still at `start` until it is moved.
    pub fn manual(start: i64) -> Self {
        Self(Some(Arc::new(AtomicI64::new(start))))
    }

    pub fn now(&self) -> i64 {
        match &self.0 {
            None => now(),
            Some(time) => time.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward; the system clock cannot be moved.
    pub fn advance(&self, seconds: i64) {
        match &self.0 {
            None => panic!("the system clock cannot be moved"),
            Some(time) => {
                time.fetch_add(seconds, Ordering::SeqCst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_for_every_clone() {
        let clock = Clock::manual(1_000);
        let copy = clock.clone();
        assert_eq!(copy.now(), 1_000);
        clock.advance(61);
        assert_eq!(copy.now(), 1_061);
        assert!(Clock::system().now() > 1_700_000_000);
    }
}
