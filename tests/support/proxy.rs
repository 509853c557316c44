//! A TCP proxy a test can cut: while cut it keeps every connection open but passes no byte
//! either way (a silent network, not a refused one: a peer only learns of it by timing out);
//! healing closes what was held and passes traffic again, as a long partition would end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Proxy {
    pub addr: String,
    cut: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr").to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicU64::new(0));
        let (c, g, target) = (cut.clone(), generation.clone(), target.to_string());
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (c, g, target) = (c.clone(), g.clone(), target.clone());
                tokio::spawn(async move {
                    let born = g.load(Ordering::SeqCst);
                    // A connection made while cut hangs until healed, then closes.
                    while c.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    if g.load(Ordering::SeqCst) != born {
                        return;
                    }
                    let Ok(outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::select! {
                        () = pump(ri, wo, c.clone(), g.clone(), born) => {}
                        () = pump(ro, wi, c, g, born) => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            cut,
            generation,
            task,
        }
    }

    /// Stops passing bytes; connections stay open.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Closes every connection made so far and passes traffic again.
    pub fn heal(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
    born: u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if generation.load(Ordering::SeqCst) != born {
            return;
        }
        let n = match tokio::time::timeout(Duration::from_millis(50), from.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => {
                // The peer closed: unless cut, pass that on (while cut, it is never heard).
                while cut.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                return;
            }
            Ok(Ok(n)) => n,
        };
        while cut.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if generation.load(Ordering::SeqCst) != born || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
