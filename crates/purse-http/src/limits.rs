//! Per-key rate limits: a token bucket per API key, refilled continuously.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Tokens are counted in millionths so that refill is exact integer arithmetic.
const ONE: u64 = 1_000_000;

struct Bucket {
    /// Millionths of a request.
    tokens: u64,
    at: Instant,
}

pub struct RateLimiter {
    /// Requests per second; 0 turns limiting off.
    rate: u64,
    capacity: u64,
    buckets: Mutex<HashMap<u64, Bucket>>,
}

impl RateLimiter {
    pub fn new(rate_per_s: u32, burst: u32) -> RateLimiter {
        let burst = u64::from(burst.max(1));
        RateLimiter { rate: u64::from(rate_per_s), capacity: burst * ONE, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request from the key's bucket, or answers how many whole seconds to wait.
    pub fn check(&self, key: u64) -> Result<(), u64> {
        if self.rate == 0 {
            return Ok(());
        }
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        let now = Instant::now();
        let bucket = buckets.entry(key).or_insert(Bucket { tokens: self.capacity, at: now });
        // `rate` requests per second is `rate` millionths per microsecond.
        let elapsed_us = u64::try_from(now.duration_since(bucket.at).as_micros()).unwrap_or(u64::MAX);
        bucket.tokens = bucket.tokens.saturating_add(elapsed_us.saturating_mul(self.rate)).min(self.capacity);
        bucket.at = now;
        if bucket.tokens >= ONE {
            bucket.tokens -= ONE;
            Ok(())
        } else {
            let wait_us = (ONE - bucket.tokens).div_ceil(self.rate);
            Err(wait_us.div_ceil(1_000_000).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_waits_and_keys_are_independent() {
        let limiter = RateLimiter::new(1, 3);
        assert!((0..3).all(|_| limiter.check(7).is_ok()));
        assert_eq!(limiter.check(7), Err(1));
        assert!(limiter.check(8).is_ok());
        assert!(RateLimiter::new(0, 0).check(7).is_ok());
    }
}
