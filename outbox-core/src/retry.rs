//! Backoff between attempts.

use std::time::Duration;

/// Exponential backoff with jitter and a cap.
///
/// The delay before attempt `n + 1`, after `n` failed attempts, is `initial * multiplier^(n-1)`, capped at
/// `max`, then reduced by a random fraction of up to `jitter` so that failures that happened together do not
/// retry together.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay after the first failure. Default 200 ms.
    pub initial: Duration,
    /// Growth per further failure. Default 2.
    pub multiplier: f64,
    /// Largest delay. Default 60 s.
    pub max: Duration,
    /// Fraction of the delay taken off at random, 0 to 1. Default 0.2.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(200),
            multiplier: 2.0,
            max: Duration::from_secs(60),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The delay after `failures` failed attempts (1 for the first failure).
    pub fn delay(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(64) as i32;
        let raw = self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        let capped = raw.min(self.max.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0) * fastrand::f64();
        Duration::from_secs_f64(capped * (1.0 - jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let policy = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.delay(1), Duration::from_millis(200));
        assert_eq!(policy.delay(2), Duration::from_millis(400));
        assert_eq!(policy.delay(4), Duration::from_millis(1600));
        assert_eq!(policy.delay(30), Duration::from_secs(60));
        assert_eq!(policy.delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn jitter_only_shortens_within_its_fraction() {
        let policy = RetryPolicy::default();
        for _ in 0..1000 {
            let d = policy.delay(3);
            assert!(
                d <= Duration::from_millis(800) && d >= Duration::from_millis(640),
                "{d:?}"
            );
        }
    }
}
