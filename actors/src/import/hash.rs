//! The content hash that identifies a file: xxh3-64, streamed.

use std::io::Read;
use std::path::Path;
use xxhash_rust::xxh3::Xxh3;

/// Hashes a file in 256 KiB reads; returns 16 lower-case hex digits and the size.
pub fn file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Xxh3::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((format!("{:016x}", h.digest()), size))
}

pub fn bytes(b: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(b))
}
