//! MD5 digests as KOReader names documents (`docs/protocols/kosync.md`, section 6): the
//! "partial MD5" of a file's bytes and the MD5 of a file name. Neither is a security
//! measure; they are the names a KOReader device sends, so they must match its bit for bit.

use md5::{Digest, Md5};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Where KOReader samples a file: offset 0 (LuaJIT's `1024 << -2` wraps to 0), then
/// `1024 << 2i` for i = 0..10. Up to 1024 bytes each.
const OFFSETS: [u64; 12] = [
    0, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864, 268435456,
    1073741824,
];

pub(crate) fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The MD5 of `b`.
pub fn md5_bytes(b: &[u8]) -> [u8; 16] {
    Md5::digest(b).into()
}

/// Lower-case hex MD5 of `b`.
pub fn md5_hex(b: &[u8]) -> String {
    hex(&Md5::digest(b))
}

/// KOReader's partial MD5 of bytes held in memory.
pub fn partial_md5_bytes(b: &[u8]) -> String {
    let mut ctx = Md5::new();
    for off in OFFSETS {
        let off = off as usize;
        if off >= b.len() {
            break;
        }
        ctx.update(&b[off..b.len().min(off + 1024)]);
    }
    hex(&ctx.finalize())
}

/// KOReader's partial MD5 of a file: at most 12 KiB read, whatever its size.
pub fn partial_md5_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    let mut ctx = Md5::new();
    let mut buf = [0u8; 1024];
    for off in OFFSETS {
        if off >= size {
            break;
        }
        let n = (size - off).min(1024) as usize;
        f.seek(SeekFrom::Start(off))?;
        f.read_exact(&mut buf[..n])?;
        ctx.update(&buf[..n]);
    }
    Ok(hex(&ctx.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    /// The reference's vectors (byte i is `i mod 251`), in memory and from a file.
    #[test]
    fn partial_md5_matches_the_reference_vectors() {
        let dir = tempfile::tempdir().unwrap();
        for (n, want) in [
            (0, "d41d8cd98f00b204e9800998ecf8427e"),
            (1, "93b885adfe0da089cdf634904fd59f71"),
            (1023, "7437d7a881387db7c41cf6930ab5e35d"),
            (1024, "9ee0a0e0c0bc0f1ff29d663d1fdf0743"),
            (1025, "3f3789452b88cb32b8cbfbafe715e29a"),
            (4096, "1544ef7a46131a30cf328f55979db73d"),
            (4097, "1979738fc31ef42b2e5ab4d9c7199ea2"),
            (70000, "f34024643c82aec13b2fd5eb2842658a"),
            (1100000, "da96d9df9e3ed2a4e922f3641ba40600"),
        ] {
            let b = pattern(n);
            assert_eq!(partial_md5_bytes(&b), want, "n = {n}");
            let p = dir.path().join(format!("f{n}"));
            std::fs::write(&p, &b).unwrap();
            assert_eq!(partial_md5_file(&p).unwrap(), want, "file of n = {n}");
        }
        // The wrong "first offset 256" variant's digests are not what we make.
        assert_ne!(
            partial_md5_bytes(&pattern(70000)),
            "2a0b98face1749afa3fdda4fc822b995"
        );
    }

    #[test]
    fn file_name_digest() {
        assert_eq!(
            md5_hex(b"Moby Dick - Herman Melville.epub"),
            "51e62ec7b6f7433d197fdd73a75a64da"
        );
    }
}
