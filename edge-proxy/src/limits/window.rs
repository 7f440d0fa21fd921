//! The edge's own sliding 60-second window: a ring of one-second buckets, lock-free. Always
//! recorded (settled units, at the second they settle), so it is warm when the edge falls back
//! to its safe share. A unit recorded in second `s` counts until second `s + 60` has passed
//! (61 buckets, like the plane), so every real 60-second interval — not just aligned minutes —
//! holds at most the cap: no 2× at a boundary.

use std::sync::atomic::{AtomicU64, Ordering};

const BUCKETS: usize = 64;
/// Seconds a unit stays in the window after the second it was recorded in.
const WINDOW_SECS: u64 = 60;

/// Each bucket packs the second it belongs to (high 32 bits) and its units (low 32 bits), so a
/// bucket is reused for a new second with one compare-and-swap.
#[derive(Debug)]
pub struct SlidingWindow {
    buckets: [AtomicU64; BUCKETS],
}

impl Default for SlidingWindow {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

fn second_of(unix_ms: i64) -> u64 {
    u64::try_from(unix_ms.max(0) / 1000).unwrap_or(0) & 0xFFFF_FFFF
}

fn unpack(packed: u64) -> (u64, u64) {
    (packed >> 32, packed & 0xFFFF_FFFF)
}

fn pack(second: u64, units: u64) -> u64 {
    (second << 32) | units.min(0xFFFF_FFFF)
}

impl SlidingWindow {
    /// Adds `units` at the second of `now_ms` (negative or zero units are ignored).
    pub fn record(&self, now_ms: i64, units: i64) {
        let Ok(units) = u64::try_from(units) else {
            return;
        };
        if units == 0 {
            return;
        }
        let second = second_of(now_ms);
        let bucket = &self.buckets[(second as usize) % BUCKETS];
        let mut current = bucket.load(Ordering::Relaxed);
        loop {
            let (bucket_second, bucket_units) = unpack(current);
            let next = if bucket_second == second {
                pack(second, bucket_units.saturating_add(units))
            } else {
                pack(second, units)
            };
            match bucket.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    fn in_window(second: u64, now_second: u64) -> bool {
        second <= now_second && second + WINDOW_SECS >= now_second
    }

    /// Units recorded in the window that ends at `now_ms`.
    pub fn sum(&self, now_ms: i64) -> i64 {
        let now_second = second_of(now_ms);
        let total: u64 = self
            .buckets
            .iter()
            .map(|bucket| unpack(bucket.load(Ordering::Acquire)))
            .filter(|&(second, units)| units > 0 && Self::in_window(second, now_second))
            .map(|(_, units)| units)
            .sum();
        i64::try_from(total).unwrap_or(i64::MAX)
    }

    /// Time until the oldest units in the window leave it (and free capacity); 0 when empty.
    pub fn reset_after_ms(&self, now_ms: i64) -> i64 {
        let now_second = second_of(now_ms);
        let oldest = self
            .buckets
            .iter()
            .map(|bucket| unpack(bucket.load(Ordering::Acquire)))
            .filter(|&(second, units)| units > 0 && Self::in_window(second, now_second))
            .map(|(second, _)| second)
            .min();
        match oldest {
            None => 0,
            Some(second) => {
                let leaves_at_ms =
                    i64::try_from((second + WINDOW_SECS + 1) * 1000).unwrap_or(i64::MAX);
                (leaves_at_ms - now_ms).max(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn units_count_for_a_full_minute_after_their_second() {
        let window = SlidingWindow::default();
        window.record(T0 + 59_900, 100);
        // A fixed minute bucket would reset here and allow another 100.
        assert_eq!(window.sum(T0 + 60_100), 100);
        assert_eq!(window.sum(T0 + 119_999), 100);
        assert_eq!(window.sum(T0 + 120_000), 0);
        assert_eq!(window.reset_after_ms(T0 + 60_000), 60_000);
        assert_eq!(window.reset_after_ms(T0 + 120_000), 0);
    }

    #[test]
    fn buckets_are_reused_for_new_seconds() {
        let window = SlidingWindow::default();
        window.record(T0, 5);
        window.record(T0 + 64_000, 7);
        assert_eq!(window.sum(T0 + 64_000), 7);
        window.record(T0 + 64_500, 1);
        assert_eq!(window.sum(T0 + 64_999), 8);
        window.record(T0 + 64_500, 0);
        window.record(T0 + 64_500, -3);
        assert_eq!(window.sum(T0 + 64_999), 8);
    }

    /// Greedy clients admit whatever the window allows, every 100 ms for five minutes; no real
    /// 60-second interval (at 100-ms resolution, any alignment) ever holds more than the cap.
    #[test]
    fn no_sixty_second_interval_exceeds_the_cap_at_any_alignment() {
        const CAP: i64 = 100;
        let window = SlidingWindow::default();
        let mut admitted_at = Vec::new();
        let mut now = T0 + 37;
        while now < T0 + 300_000 {
            let free = CAP - window.sum(now);
            if free > 0 {
                let take = free.min(17);
                window.record(now, take);
                admitted_at.push((now, take));
            }
            now += 100;
        }
        for start in (T0..T0 + 240_000).step_by(100) {
            let in_interval: i64 = admitted_at
                .iter()
                .filter(|(at, _)| *at >= start && *at < start + 60_000)
                .map(|(_, units)| units)
                .sum();
            assert!(
                in_interval <= CAP,
                "{in_interval} admitted in [{start}, +60 s)"
            );
        }
        let total: i64 = admitted_at.iter().map(|(_, units)| units).sum();
        assert!(total >= 4 * CAP, "the window must still admit: {total}");
    }
}
