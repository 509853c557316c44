//! What nodes say to each other, encoded with postcard behind a version byte. Postcard is not
//! self-describing: a node must refuse a payload of a version it does not know rather than
//! misread it, so every payload starts with [`VERSION`] and a rolling upgrade that changes a
//! message bumps it (or adds a new variant at the end, which older nodes refuse by name).

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The version of every payload this build sends and the only one it reads.
pub const VERSION: u8 = 1;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("empty payload")]
    Empty,
    #[error("payload version {0}, this node reads only version {VERSION}")]
    Version(u8),
    #[error("undecodable payload: {0}")]
    Decode(String),
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![VERSION];
    // Serializing plain data into a Vec cannot fail; an empty body would be refused by the
    // receiver as undecodable rather than misread.
    if let Ok(body) = postcard::to_stdvec(v) {
        out.extend(body);
    }
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (&v, body) = bytes.split_first().ok_or(WireError::Empty)?;
    if v != VERSION {
        return Err(WireError::Version(v));
    }
    postcard::from_bytes(body).map_err(|e| WireError::Decode(e.to_string()))
}

/// `#[serde(with = "as_json")]`: a field whose type is stored as JSON (and uses serde
/// features postcard cannot read, such as internally tagged enums or arbitrary numbers)
/// travels as that JSON text inside the postcard payload.
pub mod as_json {
    use serde::de::{DeserializeOwned, Error as _};
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(v).map_err(S::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        d: D,
    ) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let b = encode(&("hello".to_string(), 42u64));
        assert_eq!(b[0], VERSION);
        assert_eq!(
            decode::<(String, u64)>(&b).unwrap(),
            ("hello".to_string(), 42)
        );
        let mut newer = b.clone();
        newer[0] = VERSION + 1;
        assert_eq!(
            decode::<(String, u64)>(&newer),
            Err(WireError::Version(VERSION + 1))
        );
        assert_eq!(decode::<(String, u64)>(&[]), Err(WireError::Empty));
        assert!(matches!(
            decode::<(String, u64)>(&b[..3]),
            Err(WireError::Decode(_))
        ));
    }
}
