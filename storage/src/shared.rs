//! Redis: what nodes share that need not be durable (login limits, revocation notices).
//! Nothing acknowledged depends on it: every caller falls back to its node's own memory when
//! Redis is down or slow, and the client reconnects in the background.

use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::Message;
use std::time::Duration;

/// How long a command may take before the caller falls back to its node's memory.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(300);

#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("redis is not connected")]
    Disconnected,
    #[error("redis: {0}")]
    Redis(String),
}

impl From<fred::error::Error> for SharedError {
    fn from(e: fred::error::Error) -> Self {
        SharedError::Redis(e.to_string())
    }
}

pub struct Shared {
    client: Client,
    sub: SubscriberClient,
}

fn key(k: &str) -> String {
    format!("dogear:{k}")
}

impl Shared {
    /// Starts connecting to `url` (`redis://host:port/db`) and returns at once: a Redis that
    /// is down at start is reached when it comes up.
    pub fn connect(url: &str) -> Result<Shared, String> {
        let config = Config::from_url(url).map_err(|e| format!("redis.url: {e}"))?;
        let build = || {
            let mut b = Builder::from_config(config.clone());
            b.with_performance_config(|p| p.default_command_timeout = COMMAND_TIMEOUT)
                .with_connection_config(|c| {
                    c.connection_timeout = Duration::from_secs(2);
                    c.max_command_attempts = 1;
                })
                .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
            b
        };
        let client = build().build().map_err(|e| format!("redis: {e}"))?;
        let sub = build()
            .build_subscriber_client()
            .map_err(|e| format!("redis: {e}"))?;
        // The connection tasks run on their own; their handles are not needed.
        drop(client.connect());
        drop(sub.connect());
        // Subscriptions are made again after every reconnect.
        drop(sub.manage_subscriptions());
        Ok(Shared { client, sub })
    }

    fn ready(&self) -> Result<(), SharedError> {
        if self.client.is_connected() {
            Ok(())
        } else {
            Err(SharedError::Disconnected)
        }
    }

    /// Counts one failure for `k` in a window of `window` that starts at its first failure;
    /// returns the count so far.
    pub async fn record_failure(&self, k: &str, window: Duration) -> Result<u64, SharedError> {
        self.ready()?;
        let k = key(k);
        let n: u64 = self.client.incr(&k).await?;
        if n == 1 {
            let _: () = self
                .client
                .expire(&k, window.as_secs().max(1) as i64, None)
                .await?;
        }
        Ok(n)
    }

    /// Failures counted for `k` in its current window, and the seconds the window has left.
    pub async fn failures(&self, k: &str) -> Result<(u64, u64), SharedError> {
        self.ready()?;
        let k = key(k);
        let n: Option<u64> = self.client.get(&k).await?;
        let Some(n) = n else { return Ok((0, 0)) };
        let ttl: i64 = self.client.ttl(&k).await?;
        Ok((n, ttl.max(1) as u64))
    }

    pub async fn clear(&self, k: &str) -> Result<(), SharedError> {
        self.ready()?;
        let _: i64 = self.client.del(key(k)).await?;
        Ok(())
    }

    /// Sets `k` to `v` for `ttl` unless it is set: `true` if this call set it.
    pub async fn claim(&self, k: &str, v: &str, ttl: Duration) -> Result<bool, SharedError> {
        self.set(k, v, ttl, Some(SetOptions::NX)).await
    }

    /// Sets `k` to `v` for `ttl`, whatever it was.
    pub async fn put(&self, k: &str, v: &str, ttl: Duration) -> Result<(), SharedError> {
        self.set(k, v, ttl, None).await.map(|_| ())
    }

    async fn set(
        &self,
        k: &str,
        v: &str,
        ttl: Duration,
        only: Option<SetOptions>,
    ) -> Result<bool, SharedError> {
        self.ready()?;
        let ttl = Some(Expiration::PX(ttl.as_millis().max(1) as i64));
        let set: Option<String> = self.client.set(key(k), v, ttl, only, false).await?;
        Ok(set.is_some())
    }

    pub async fn get_string(&self, k: &str) -> Result<Option<String>, SharedError> {
        self.ready()?;
        Ok(self.client.get(key(k)).await?)
    }

    pub async fn publish(&self, channel: &str, message: &str) -> Result<(), SharedError> {
        self.ready()?;
        let _: i64 = self.client.publish(key(channel), message).await?;
        Ok(())
    }

    /// Messages published on `channel` (by any node, this one included), as long as the
    /// receiver is kept.
    pub fn subscribe(&self, channel: &str) -> tokio::sync::mpsc::UnboundedReceiver<String> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let channel = key(channel);
        let sub = self.sub.clone();
        let mut messages = sub.message_rx();
        tokio::spawn(async move {
            // Retried until Redis answers; after that `manage_subscriptions` keeps it.
            while sub.subscribe(channel.clone()).await.is_err() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            loop {
                match messages.recv().await {
                    Ok(Message {
                        channel: c, value, ..
                    }) if *c == *channel => {
                        if let Some(text) = value.as_string()
                            && tx.send(text).is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        });
        rx
    }
}
