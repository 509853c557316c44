//! Invite codes: 12 characters of Crockford's base32 (60 random bits), shown as three groups
//! of four so they can be read out; typed back in any case, with or without dashes or
//! spaces, and with the letters people confuse with digits (O, I, L) read as those digits.
//! Only the SHA-256 of the normalized code is stored: 60 bits and a rate limit on
//! redemption leave nothing to gain from the hash.

use crate::error::AppError;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const LEN: usize = 12;

/// A fresh code, as shown (`XXXX-XXXX-XXXX`).
pub fn generate() -> Result<String, AppError> {
    let mut raw = [0u8; LEN];
    getrandom::fill(&mut raw).map_err(|e| AppError::Unavailable(format!("randomness: {e}")))?;
    let chars: Vec<u8> = raw.iter().map(|b| ALPHABET[(b & 31) as usize]).collect();
    let s = String::from_utf8_lossy(&chars).into_owned();
    Ok(format!("{}-{}-{}", &s[..4], &s[4..8], &s[8..]))
}

/// The code as stored: upper case, separators dropped, look-alikes mapped; `None` when it
/// cannot be a code (wrong length or characters), so a typo costs no look-up.
pub fn normalize(typed: &str) -> Option<String> {
    let mut out = String::with_capacity(LEN);
    for c in typed.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' | '\t' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
            return None;
        }
        out.push(c);
        if out.len() > LEN {
            return None;
        }
    }
    (out.len() == LEN).then_some(out)
}

/// What is stored of a code.
pub fn hash(normalized: &str) -> String {
    crate::auth::sha256_hex(&format!("dogear-invite:{normalized}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_reads_back_however_it_is_typed() {
        for _ in 0..100 {
            let code = generate().unwrap();
            assert_eq!(code.len(), 14);
            let n = normalize(&code).unwrap();
            assert_eq!(normalize(&code.to_lowercase()), Some(n.clone()));
            assert_eq!(normalize(&code.replace('-', " ")), Some(n.clone()));
            assert_eq!(hash(&n), hash(&normalize(&n).unwrap()));
        }
        assert_eq!(normalize("OIL0-1111-2222").as_deref(), Some("011011112222"));
        assert_eq!(
            normalize("abcd-efgh-jkmu"),
            None,
            "U is not in the alphabet"
        );
        assert_eq!(normalize("ABCD-EFGH-JKM"), None, "too short");
        assert_eq!(normalize("ABCD-EFGH-JKMNP"), None, "too long");
        assert_eq!(normalize("ÄBCD-EFGH-JKMN"), None);
    }
}
