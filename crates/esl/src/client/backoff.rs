//! Reconnect delays: exponential backoff with full jitter, bounded by `min` and `max`.
//!
//! Attempt `n` (0-based, counting failures since the last successful connection) waits a delay
//! drawn uniformly from `[min, min(max, min·2ⁿ⁺¹)]`. Full jitter spreads the reconnects of many
//! clients that lost the same node at the same moment, so they do not hammer it in lockstep.
//! The random draw is left to the caller ([`Backoff::delay`] takes the picker) so this code
//! stays deterministic and testable; the tokio layer picks with `rand`.

use std::time::Duration;

/// Exponential backoff bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
}

impl Backoff {
    /// Delays between `min` and `max` (`max` is raised to `min` if it is smaller).
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
        }
    }

    /// The smallest delay.
    pub fn min(&self) -> Duration {
        self.min
    }

    /// The largest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The upper bound of the delay for `attempt`: `min·2^attempt`, capped at `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        // attempt + 1: even the first retry is spread over [min, 2·min], so replicas that lose
        // the same node do not reconnect in lockstep.
        1u32.checked_shl(attempt.saturating_add(1))
            .and_then(|factor| self.min.checked_mul(factor))
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The delay before `attempt`: `pick(low, high)` chooses within `[min, ceiling(attempt)]`
    /// (uniformly, for full jitter); whatever it returns is clamped into that range.
    pub fn delay(
        &self,
        attempt: u32,
        pick: impl FnOnce(Duration, Duration) -> Duration,
    ) -> Duration {
        let high = self.ceiling(attempt);
        pick(self.min, high).clamp(self.min, high)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{QuickCheck, TestResult};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_up_to_the_cap() {
        let b = Backoff::new(ms(100), ms(1000));
        let ceilings: Vec<_> = (0..6).map(|a| b.ceiling(a)).collect();
        assert_eq!(
            ceilings,
            vec![ms(200), ms(400), ms(800), ms(1000), ms(1000), ms(1000)]
        );
        assert_eq!(b.ceiling(u32::MAX), ms(1000));
        assert_eq!(Backoff::new(ms(5), ms(1)).max(), ms(5));
    }

    /// Whatever the picker returns, the delay stays within [min, ceiling] ⊆ [min, max].
    #[test]
    fn delay_is_always_within_bounds() {
        fn prop(min_ms: u32, span_ms: u32, attempt: u32, pick_ms: u64) -> TestResult {
            let min = ms(u64::from(min_ms % 60_000));
            let max = min + ms(u64::from(span_ms % 600_000));
            let b = Backoff::new(min, max);
            let d = b.delay(attempt, |_, _| ms(pick_ms));
            let ceiling = b.ceiling(attempt);
            TestResult::from_bool(min <= d && d <= ceiling && ceiling <= max)
        }
        QuickCheck::new()
            .tests(2000)
            .quickcheck(prop as fn(u32, u32, u32, u64) -> TestResult);
    }

    /// The ceiling never shrinks from one attempt to the next, starts at min(2·min, max) and
    /// reaches max.
    #[test]
    fn ceiling_is_monotonic() {
        fn prop(min_ms: u16, span_ms: u32, attempt: u8) -> bool {
            let min = ms(u64::from(min_ms) + 1);
            let b = Backoff::new(min, min + ms(u64::from(span_ms % 3_600_000)));
            let a = u32::from(attempt);
            b.ceiling(0) == (min * 2).min(b.max())
                && b.ceiling(a) <= b.ceiling(a + 1)
                && b.ceiling(64) == b.max()
        }
        QuickCheck::new()
            .tests(2000)
            .quickcheck(prop as fn(u16, u32, u8) -> bool);
    }

    /// A uniform picker over the given range stays in range (the shape the tokio layer uses).
    #[test]
    fn picker_receives_the_jitter_range() {
        fn prop(attempt: u8, fraction: u16) -> bool {
            let b = Backoff::new(ms(50), ms(30_000));
            let d = b.delay(u32::from(attempt), |lo, hi| {
                lo + (hi - lo).mul_f64(f64::from(fraction) / f64::from(u16::MAX))
            });
            ms(50) <= d && d <= ms(30_000)
        }
        QuickCheck::new()
            .tests(1000)
            .quickcheck(prop as fn(u8, u16) -> bool);
    }
}
