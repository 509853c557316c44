//! Ids as newtypes so that a device id can never be passed where a book id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh time-ordered (v7) id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.as_hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// A person with an account.
    UserId
);
id_type!(
    /// One of a user's devices (a browser, a phone app, a Kobo, KOReader).
    DeviceId
);
id_type!(
    /// A book record in one library.
    BookId
);
id_type!(
    /// A personal or shared library.
    LibraryId
);
id_type!(
    /// The client-chosen id that makes a progress write idempotent.
    EventId
);
id_type!(
    /// A chain of rotated refresh tokens descending from one login.
    FamilyId
);
id_type!(
    /// A queued import.
    JobId
);
id_type!(
    /// A user's shelf (a Kobo collection on the device).
    ShelfId
);
id_type!(
    /// An invitation to a shared library.
    InviteId
);
id_type!(
    /// A reader's note, todo or annotation; chosen by the client that made it (an app that
    /// works offline makes its ids itself) or by Dogear.
    DocId
);
