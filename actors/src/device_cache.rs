//! Recent look-ups of a device's credentials (a Kobo's token, a KOReader's login), keyed by a
//! hash of what the device presented: every call of a device presents them, and a look-up
//! costs a store read (and for a KOReader an argon2 hash). An entry is trusted for a few
//! seconds and dropped at once when its device is deleted on this node (and, through Redis,
//! on the others).

use dogear_storage::{DeviceId, KoboToken, KoreaderLogin, OpdsToken};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::time::Instant;

/// A credential that belongs to one device.
pub trait OfDevice {
    fn device(&self) -> DeviceId;
}

impl OfDevice for KoboToken {
    fn device(&self) -> DeviceId {
        self.device_id
    }
}

impl OfDevice for OpdsToken {
    fn device(&self) -> DeviceId {
        self.device_id
    }
}

impl OfDevice for KoreaderLogin {
    fn device(&self) -> DeviceId {
        self.device_id
    }
}

pub struct DeviceCache<V> {
    ttl_secs: u64,
    map: Mutex<HashMap<String, (V, Instant)>>,
}

impl<V: Clone + OfDevice> DeviceCache<V> {
    pub fn new(ttl_secs: u64) -> DeviceCache<V> {
        DeviceCache {
            ttl_secs,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        let map = self.map.lock().ok()?;
        let (v, at) = map.get(key)?;
        (at.elapsed().as_secs() < self.ttl_secs).then(|| v.clone())
    }

    pub fn put(&self, key: String, v: V) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() > 10_000 {
                let ttl = self.ttl_secs;
                map.retain(|_, (_, at)| at.elapsed().as_secs() < ttl);
            }
            map.insert(key, (v, Instant::now()));
        }
    }

    pub fn forget_device(&self, device: DeviceId) {
        if let Ok(mut map) = self.map.lock() {
            map.retain(|_, (v, _)| v.device() != device);
        }
    }
}
