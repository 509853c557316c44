//! The merge rule for edits to a book's metadata, field by field, as a pure function.
//!
//! Two members of a shared library may edit the same book offline and sync later. Each edit
//! carries the client's time and device; each field of the book keeps the clock of the edit
//! that last set it. An edit's field is taken when its clock is greater than the field's:
//! the later client time wins, then the greater device id (an edit without a device sorts
//! first), then, for two different values under one clock, the greater value as canonical
//! JSON. So every field ends at the value of the greatest edit that touched it, a maximum,
//! which does not depend on the order the edits arrive in: the same edits in any order give
//! the same record on every node. Edits to different fields never meet.

use dogear_storage::FieldClock;
use serde::Serialize;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// Whether `incoming` (its clock and value) replaces a field that holds `current` set at
/// `stored` (`None`: never edited by a person, so any edit wins).
pub fn wins<T: Serialize>(
    stored: Option<&FieldClock>,
    current: &T,
    incoming: &FieldClock,
    value: &T,
) -> bool {
    let Some(stored) = stored else {
        return true;
    };
    match incoming.cmp(stored) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => {
            let a = serde_json::to_vec(value).unwrap_or_default();
            let b = serde_json::to_vec(current).unwrap_or_default();
            a > b
        }
    }
}

/// Sets `field` to `value` if the edit wins, recording its clock; `true` when it did.
pub fn merge_field<T: Serialize + PartialEq>(
    clocks: &mut BTreeMap<String, FieldClock>,
    field: &str,
    slot: &mut T,
    value: T,
    clock: FieldClock,
) -> bool {
    if !wins(clocks.get(field), &*slot, &clock, &value) {
        return false;
    }
    clocks.insert(field.to_string(), clock);
    *slot = value;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use dogear_storage::{DeviceId, Timestamp};
    use proptest::prelude::*;

    /// A small record of three fields, edited like a book.
    #[derive(Clone, Debug, Default, PartialEq)]
    struct Record {
        title: String,
        tags: Vec<String>,
        series: Option<String>,
        clocks: BTreeMap<String, FieldClock>,
    }

    #[derive(Clone, Debug)]
    enum Edit {
        Title(String),
        Tags(Vec<String>),
        Series(Option<String>),
    }

    fn apply(r: &mut Record, e: &Edit, clock: FieldClock) {
        match e {
            Edit::Title(v) => {
                merge_field(&mut r.clocks, "title", &mut r.title, v.clone(), clock);
            }
            Edit::Tags(v) => {
                merge_field(&mut r.clocks, "tags", &mut r.tags, v.clone(), clock);
            }
            Edit::Series(v) => {
                merge_field(&mut r.clocks, "series", &mut r.series, v.clone(), clock);
            }
        }
    }

    fn devices() -> [Option<DeviceId>; 3] {
        [
            None,
            Some("01a00000-0000-7000-8000-000000000001".parse().unwrap()),
            Some("01a00000-0000-7000-8000-000000000002".parse().unwrap()),
        ]
    }

    fn edit() -> impl Strategy<Value = (Edit, FieldClock)> {
        let value = prop_oneof![
            "[ab]{0,2}".prop_map(Edit::Title),
            proptest::collection::vec("[xy]", 0..3).prop_map(Edit::Tags),
            proptest::option::of("[st]").prop_map(Edit::Series),
        ];
        // Few times and devices, so that equal clocks (ties) happen often.
        (value, 0i64..4, 0usize..3).prop_map(|(e, at, d)| {
            (
                e,
                FieldClock {
                    at: Timestamp::from_millis(at),
                    device: devices()[d],
                },
            )
        })
    }

    proptest! {
        /// Any order of the same edits gives the same record.
        #[test]
        fn the_order_of_edits_does_not_matter(
            edits in proptest::collection::vec(edit(), 0..12),
            seed in any::<u64>(),
        ) {
            let mut a = Record::default();
            for (e, c) in &edits {
                apply(&mut a, e, *c);
            }
            let mut shuffled = edits.clone();
            // A permutation from the seed (Fisher-Yates with a small LCG).
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (x >> 33) as usize % (i + 1));
            }
            let mut b = Record::default();
            for (e, c) in &shuffled {
                apply(&mut b, e, *c);
            }
            prop_assert_eq!(a, b);
        }

        /// Applying an edit twice changes nothing the second time.
        #[test]
        fn an_edit_again_changes_nothing(edits in proptest::collection::vec(edit(), 1..8)) {
            let mut a = Record::default();
            for (e, c) in &edits {
                apply(&mut a, e, *c);
            }
            let before = a.clone();
            for (e, c) in &edits {
                apply(&mut a, e, *c);
            }
            prop_assert_eq!(a, before);
        }
    }

    #[test]
    fn later_time_wins_then_device() {
        let (d1, d2) = (devices()[1], devices()[2]);
        let at = |ms| Timestamp::from_millis(ms);
        let mut clocks = BTreeMap::new();
        let mut title = "Old".to_string();
        let c = |ms, device| FieldClock { at: at(ms), device };
        assert!(merge_field(
            &mut clocks,
            "title",
            &mut title,
            "A".into(),
            c(10, d2)
        ));
        assert!(
            !merge_field(&mut clocks, "title", &mut title, "B".into(), c(5, d2)),
            "older"
        );
        assert!(
            !merge_field(&mut clocks, "title", &mut title, "C".into(), c(10, d1)),
            "lower device"
        );
        assert!(merge_field(
            &mut clocks,
            "title",
            &mut title,
            "D".into(),
            c(11, None)
        ));
        assert_eq!(title, "D");
    }
}
