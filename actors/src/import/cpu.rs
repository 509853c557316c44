//! A fixed set of threads for the importer's CPU work (hashing, parsing, conversion).
//! Tokio's blocking pool would spread the work over dozens of threads, each keeping its own
//! allocator pages; a few long-lived threads reuse theirs, which kept an import's memory
//! several times smaller for the same speed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::oneshot;

type Task = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct CpuPool {
    tx: Arc<Mutex<mpsc::Sender<Task>>>,
}

impl CpuPool {
    pub fn new(threads: usize) -> CpuPool {
        let (tx, rx) = mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("dogear-import-{i}"))
                .spawn(move || {
                    loop {
                        let task = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match task {
                            Ok(t) => t(),
                            Err(_) => return,
                        }
                    }
                });
        }
        CpuPool {
            tx: Arc::new(Mutex::new(tx)),
        }
    }

    /// Runs `f` on the pool. `Err(())` if it panicked (the thread survives).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ()> {
        let (reply, rx) = oneshot::channel();
        let task: Task = Box::new(move || {
            let _ = reply.send(catch_unwind(AssertUnwindSafe(f)).map_err(|_| ()));
        });
        let sent = self.tx.lock().map_err(|_| ())?.send(task);
        sent.map_err(|_| ())?;
        rx.await.map_err(|_| ())?
    }
}
