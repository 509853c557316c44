//! Login attempt limiting: a sliding window of failures per key (a username, an address),
//! in the node's memory; and [`Limiter`], which counts in Redis when one is configured, so
//! that a cluster's nodes share one count (a fixed window from the first failure), and falls
//! back to its node's count whenever Redis does not answer.

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

/// A limit every node of a cluster shares through Redis, with its node's own count beside it.
pub struct Limiter {
    local: RateLimiter,
    shared: Option<std::sync::Arc<dogear_storage::shared::Shared>>,
    /// Prefix of this limiter's Redis keys.
    name: &'static str,
    max_failures: usize,
    window: Duration,
}

impl Limiter {
    pub fn new(name: &'static str, max_failures: usize, window: Duration) -> Limiter {
        Limiter {
            local: RateLimiter::new(max_failures, window),
            shared: None,
            name,
            max_failures: max_failures.max(1),
            window,
        }
    }

    pub fn share(&mut self, shared: std::sync::Arc<dogear_storage::shared::Shared>) {
        self.shared = Some(shared);
    }

    fn shared_key(&self, key: &str) -> String {
        format!("rl:{}:{key}", self.name)
    }

    /// `Some(seconds to wait)` when `key` has used up its failures.
    pub async fn check(&self, key: &str, now: Instant) -> Option<u64> {
        if let Some(s) = &self.shared {
            match s.failures(&self.shared_key(key)).await {
                Ok((n, ttl)) => {
                    return (n as usize >= self.max_failures).then_some(ttl.max(1));
                }
                Err(e) => fell_back(&e),
            }
        }
        self.local.check(key, now)
    }

    pub async fn fail(&self, key: &str, now: Instant) {
        self.local.fail(key, now);
        if let Some(s) = &self.shared
            && let Err(e) = s.record_failure(&self.shared_key(key), self.window).await
        {
            fell_back(&e);
        }
    }

    pub async fn clear(&self, key: &str) {
        self.local.clear(key);
        if let Some(s) = &self.shared
            && let Err(e) = s.clear(&self.shared_key(key)).await
        {
            fell_back(&e);
        }
    }
}

/// Counts a use of the node's own memory instead of Redis; warns at most every 30 s.
fn fell_back(e: &dogear_storage::shared::SharedError) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_WARNED: AtomicU64 = AtomicU64::new(0);
    metrics::counter!("dogear_redis_fallbacks_total", "what" => "login_limits").increment(1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if now.saturating_sub(LAST_WARNED.swap(now, Ordering::Relaxed)) >= 30 {
        tracing::warn!(error = %e, "redis unavailable: login limits count on this node only");
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
