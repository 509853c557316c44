//! Login attempt limiting: a sliding window of failures per key (a username, an address).
//! In memory on purpose: a restart forgives, and a cluster limits per node, which still
//! bounds guessing to a handful of tries per minute per node.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub struct RateLimiter {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    pub fn new(max_failures: usize, window: Duration) -> RateLimiter {
        RateLimiter {
            max_failures: max_failures.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(seconds to wait)` when `key` has used up its failures in the window.
    pub fn check(&self, key: &str, now: Instant) -> Option<u64> {
        let mut map = self.failures.lock().ok()?;
        let q = map.get_mut(key)?;
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            q.pop_front();
        }
        if q.is_empty() {
            map.remove(key);
            return None;
        }
        if q.len() >= self.max_failures {
            let oldest = *q.front()?;
            let wait = self.window.saturating_sub(now.duration_since(oldest));
            return Some(wait.as_secs().max(1));
        }
        None
    }

    pub fn fail(&self, key: &str, now: Instant) {
        if let Ok(mut map) = self.failures.lock() {
            // Bound memory under a spray of random usernames: drop the stalest keys.
            if map.len() > 100_000 {
                let window = self.window;
                map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
            }
            let q = map.entry(key.to_string()).or_default();
            q.push_back(now);
            while q.len() > self.max_failures {
                q.pop_front();
            }
        }
    }

    pub fn clear(&self, key: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_within_the_window_and_forgives_after() {
        let rl = RateLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(rl.check("u:a", t0), None);
            rl.fail("u:a", t0);
        }
        assert_eq!(rl.check("u:a", t0 + Duration::from_secs(10)), Some(50));
        assert_eq!(rl.check("u:b", t0), None, "keys are independent");
        assert_eq!(rl.check("u:a", t0 + Duration::from_secs(61)), None);
        rl.fail("u:a", t0);
        rl.clear("u:a");
        assert_eq!(rl.check("u:a", t0), None);
    }
}
