//! Rendezvous (highest random weight) hashing: the owner of a key is the live member whose
//! hash with the key is highest. When a member comes or goes, only the keys it wins (or won)
//! move; every other key keeps its owner, so a membership change never reshuffles the cluster.

use xxhash_rust::xxh3::xxh3_64_with_seed;

fn weight(member: &str, key: &str) -> u64 {
    // The member's name seeds the hash of the key: independent weights per member.
    xxh3_64_with_seed(
        key.as_bytes(),
        xxh3_64_with_seed(member.as_bytes(), 0x646f_6765),
    )
}

/// The member that owns `key`, or `None` with no members. Ties (practically impossible)
/// go to the greater name, so every node picks the same owner.
pub fn owner<'a>(members: impl IntoIterator<Item = &'a str>, key: &str) -> Option<&'a str> {
    members.into_iter().max_by_key(|m| (weight(m, key), *m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaving_member_moves_only_its_keys() {
        let all = ["a", "b", "c"];
        let keys: Vec<String> = (0..3000).map(|i| format!("user:{i}")).collect();
        let before: Vec<&str> = keys.iter().map(|k| owner(all, k).unwrap()).collect();
        for share in ["a", "b", "c"] {
            let n = before.iter().filter(|o| **o == share).count();
            assert!((800..1200).contains(&n), "{share} owns {n} of 3000");
        }
        let after: Vec<&str> = keys.iter().map(|k| owner(["a", "c"], k).unwrap()).collect();
        for (b, a) in before.iter().zip(&after) {
            if *b != "b" {
                assert_eq!(b, a, "a key of a staying member moved");
            } else {
                assert_ne!(*a, "b");
            }
        }
        // And back: b returning takes exactly its keys again.
        let back: Vec<&str> = keys.iter().map(|k| owner(all, k).unwrap()).collect();
        assert_eq!(before, back);
        assert_eq!(owner(Vec::<&str>::new(), "k"), None);
    }
}
