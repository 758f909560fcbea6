//! Token-bucket pacing for `bench produce --rate`.
//!
//! Tokens accrue continuously at `rate` per second; each record takes one. The sender sleeps
//! until the next token is due, then sends every token that has accrued meanwhile (usually one
//! or two: sleeps overshoot by tens of microseconds), so records go out in slices of well under
//! a millisecond. Because the bucket remembers fractional tokens and holds up to
//! [`MAX_CATCH_UP`] worth of them, timer overshoot and short descheduling of the sender (common
//! on a loaded 2-core machine) never lose rate, and the long-run rate is exact; a sender that
//! fell further behind (a full client queue) catches up by at most that much instead of
//! bursting through everything it missed.

use std::time::Duration;

/// The largest burst the bucket allows, as time at the target rate.
pub(crate) const MAX_CATCH_UP: Duration = Duration::from_millis(100);

/// A token bucket driven by an external clock (time since the start of the run), so that the
/// math is testable without sleeping.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Duration,
}

impl Pacer {
    /// A pacer for `rate` records per second (> 0). It starts with one token, so the first
    /// record goes out at once.
    pub(crate) fn new(rate: f64) -> Self {
        assert!(rate > 0.0, "rate must be positive");
        Pacer {
            rate,
            capacity: (rate * MAX_CATCH_UP.as_secs_f64()).max(2.0),
            tokens: 1.0,
            last: Duration::ZERO,
        }
    }

    fn refill(&mut self, now: Duration) {
        if now > self.last {
            let earned = (now - self.last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + earned).min(self.capacity);
            self.last = now;
        }
    }

    /// Takes a token if one is available at `now`.
    pub(crate) fn try_take(&mut self, now: Duration) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long after `now` the next token will be available (zero if one is).
    pub(crate) fn wait(&mut self, now: Duration) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates a sender whose sleeps overshoot by `overshoot`, for `seconds` of clock time,
    /// and returns how many records it sent.
    fn simulate(rate: f64, overshoot: Duration, seconds: f64) -> u64 {
        let mut pacer = Pacer::new(rate);
        let end = Duration::from_secs_f64(seconds);
        let mut now = Duration::ZERO;
        let mut sent = 0;
        while now < end {
            if pacer.try_take(now) {
                sent += 1;
            } else {
                now += pacer.wait(now) + overshoot;
            }
        }
        sent
    }

    #[test]
    fn first_record_goes_at_once() {
        let mut pacer = Pacer::new(10.0);
        assert!(pacer.try_take(Duration::ZERO));
        assert!(!pacer.try_take(Duration::ZERO));
        let wait = pacer.wait(Duration::ZERO);
        assert!(wait > Duration::from_micros(99_990) && wait < Duration::from_micros(100_010));
        assert!(!pacer.try_take(Duration::from_millis(99)));
        assert!(pacer.try_take(Duration::from_micros(100_010)));
    }

    #[test]
    fn long_run_rate_is_exact_despite_sleep_overshoot() {
        for (rate, overshoot_us) in [(100.0, 80), (5_000.0, 60), (5_000.0, 150), (200_000.0, 60)] {
            let sent = simulate(rate, Duration::from_micros(overshoot_us), 10.0);
            let expected = rate * 10.0;
            let error = (sent as f64 - expected).abs() / expected;
            assert!(
                error < 0.001,
                "rate {rate}, overshoot {overshoot_us}us: sent {sent}, expected {expected}"
            );
        }
    }

    #[test]
    fn bursts_are_bounded_after_a_stall() {
        let mut pacer = Pacer::new(5_000.0);
        assert!(pacer.try_take(Duration::ZERO));
        // The sender was blocked for a whole second: it may catch up 100 ms (500 records),
        // not 5,000.
        let now = Duration::from_secs(1);
        let mut burst = 0;
        while pacer.try_take(now) {
            burst += 1;
        }
        assert_eq!(burst, 500);
    }

    #[test]
    fn a_descheduled_sender_loses_no_rate() {
        // 5,000 records/s; every 50 ms the sender is descheduled for 30 ms.
        let mut pacer = Pacer::new(5_000.0);
        let mut now = Duration::ZERO;
        let mut sent = 0u64;
        let mut next_stall = Duration::from_millis(50);
        while now < Duration::from_secs(10) {
            if pacer.try_take(now) {
                sent += 1;
            } else {
                now += pacer.wait(now) + Duration::from_micros(60);
            }
            if now >= next_stall {
                now += Duration::from_millis(30);
                next_stall = now + Duration::from_millis(50);
            }
        }
        // Spend what accrued during a final stall, then compare with the clock.
        while pacer.try_take(now) {
            sent += 1;
        }
        let expected = (5_000.0 * now.as_secs_f64()) as u64;
        assert!(
            sent.abs_diff(expected) <= 2,
            "sent {sent}, expected {expected}"
        );
    }

    #[test]
    fn low_rates_keep_a_burst_of_two() {
        let mut pacer = Pacer::new(1.0);
        assert!(pacer.try_take(Duration::ZERO));
        let later = Duration::from_secs(60);
        assert!(pacer.try_take(later));
        assert!(pacer.try_take(later));
        assert!(!pacer.try_take(later));
    }

    #[test]
    fn wait_shrinks_as_time_passes() {
        let mut pacer = Pacer::new(1_000.0);
        assert!(pacer.try_take(Duration::ZERO));
        let w0 = pacer.wait(Duration::ZERO);
        let w1 = pacer.wait(Duration::from_micros(400));
        assert!(w0 > Duration::from_micros(999) && w0 < Duration::from_micros(1_001));
        assert!(w1 < w0 && w1 > Duration::from_micros(590) && w1 < Duration::from_micros(610));
    }
}
