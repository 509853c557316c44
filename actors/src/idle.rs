//! What every long-lived actor carries: a ticker that wakes it and dies with it, the count of
//! live actors of its kind (`dogear_actors_active{kind}`), and, for keyed actors, the clock
//! that stops them when nobody has needed them for a while.
//!
//! Time is tokio's ([`tokio::time::Instant`]), so a test can pause and advance it instead of
//! sleeping.

use crate::supervisor::ActiveGuard;
use ractor::{ActorRef, Message};
use std::time::Duration;
use tokio::time::Instant;

/// A message sent to an actor every period, stopped when this is dropped (with the actor's
/// state), so no actor needs a `post_stop` just to stop its timer.
pub struct Ticker(tokio::task::JoinHandle<()>);

impl Ticker {
    pub fn start<M: Message>(myself: &ActorRef<M>, period: Duration, msg: fn() -> M) -> Ticker {
        Ticker(myself.send_interval(period, msg))
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Idle-stop bookkeeping of a keyed actor (user, device, library).
pub struct Idle {
    _ticker: Ticker,
    _active: ActiveGuard,
    timeout: Duration,
    last_active: Instant,
}

impl Idle {
    /// Starts the ticker (`tick` a quarter of `timeout` apart, so an idle actor is noticed
    /// soon after) and counts the actor as live.
    pub fn start<M: Message>(
        myself: &ActorRef<M>,
        kind: &'static str,
        timeout: Duration,
        tick: fn() -> M,
    ) -> Idle {
        Idle {
            _ticker: Ticker::start(myself, tick_period(timeout), tick),
            _active: ActiveGuard::new(kind),
            timeout,
            last_active: Instant::now(),
        }
    }

    /// A message other than the tick arrived: the actor is in use.
    pub fn touch(&mut self) {
        self.last_active = Instant::now();
    }

    /// Nobody has needed the actor for the whole timeout.
    pub fn expired(&self) -> bool {
        self.last_active.elapsed() >= self.timeout
    }
}

/// Idle actors are noticed within a quarter of the timeout.
fn tick_period(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(60))
}
