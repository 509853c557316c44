//! One Kobo's library sync: what goes out on the next page.
//!
//! The position is stored per device (never per user: two Kobos of one reader each get
//! everything) and owned by the device's actor, which builds one page at a time, so two
//! overlapping sync requests of one device never interleave. Every page's position and
//! ledger changes are committed together before the page is handed out.
//!
//! - Books: per library, a cursor on the store's change sequence (a number the single writer
//!   hands out in commit order, so a cursor never skips a book committed late with an early
//!   clock, and thousands of books imported in one second still page). Whether a book goes
//!   out as new, changed or removed is decided by the ledger of what this device was given,
//!   not by timestamps: a book the device never received is always `NewEntitlement`.
//! - Reading states: a cursor on the user's progress log, starting at the head read before a
//!   full sync began, so a position written during the sync still arrives.
//! - Shelves: a cursor on the same change sequence, with the set of shelves the device holds.
//!
//! Categories drain in that order; a page that filled up says "continue". The device may send
//! the old or the new token on a continuation: the position lives here, not in the token,
//! so both continue correctly. A request with no token or a token that is not this device's
//! (a factory reset, or the Kobo store's own) starts over from nothing.

use super::book::KoboBook;
use super::state::{ReadingView, reading_state};
use crate::error::AppError;
use dogear_storage::{
    BookId, DeviceId, KoboLedgerEntry, KoboSyncWrite, LibraryId, ProgressState, Shelf, ShelfId,
    Store, Timestamp, UserId,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The stored position of one device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    /// The stored text this position was read from (`None`: none was stored): the page
    /// built from it commits only if it is still what is stored.
    #[serde(skip)]
    pub stored: Option<String>,
    /// Counts full restarts; part of the token.
    pub generation: u64,
    /// Change number up to which each library's books were considered.
    pub libraries: BTreeMap<LibraryId, u64>,
    pub progress: u64,
    pub shelves: u64,
}

/// One thing to tell the device.
#[derive(Clone, Debug, PartialEq)]
pub enum KoboItem {
    /// A book the device does not have (or must take again with new metadata, then
    /// `metadata_changed`: Kobo updates a book's details only from this pair).
    NewEntitlement {
        book: Box<KoboBook>,
        state: Box<ReadingView>,
        metadata_changed: bool,
    },
    /// Take the book off the device.
    Removed {
        book: BookId,
        added: Timestamp,
        at: Timestamp,
    },
    ChangedReadingState(Box<ReadingView>),
    Tag {
        shelf: Shelf,
        new: bool,
    },
    DeletedTag {
        id: ShelfId,
        at: Timestamp,
    },
}

impl KoboItem {
    /// How many entries of the response this item takes.
    pub fn weight(&self) -> usize {
        match self {
            KoboItem::NewEntitlement {
                metadata_changed: true,
                ..
            } => 2,
            _ => 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SyncPage {
    pub items: Vec<KoboItem>,
    /// More is pending: the device should ask again at once.
    pub more: bool,
    pub generation: u64,
}

struct Builder<'a> {
    store: &'a dyn Store,
    user: UserId,
    device: DeviceId,
    room: usize,
    items: Vec<KoboItem>,
    ledger: HashMap<BookId, KoboLedgerEntry>,
    write: KoboSyncWrite,
}

impl Builder<'_> {
    fn push(&mut self, item: KoboItem) {
        self.room = self.room.saturating_sub(item.weight());
        self.items.push(item);
    }

    /// Ledger entries of `books`, this page's own writes first.
    async fn ledger_of(
        &self,
        books: &[BookId],
    ) -> Result<HashMap<BookId, KoboLedgerEntry>, AppError> {
        let missing: Vec<BookId> = books
            .iter()
            .filter(|b| !self.ledger.contains_key(b))
            .copied()
            .collect();
        let mut out: HashMap<BookId, KoboLedgerEntry> = if missing.is_empty() || self.write.reset {
            HashMap::new()
        } else {
            self.store
                .kobo_ledger(self.device, &missing)
                .await?
                .into_iter()
                .map(|e| (e.book_id, e))
                .collect()
        };
        for b in books {
            if let Some(e) = self.ledger.get(b) {
                out.insert(*b, e.clone());
            }
        }
        Ok(out)
    }

    fn record(&mut self, e: KoboLedgerEntry) {
        self.ledger.insert(e.book_id, e.clone());
        self.write.ledger.push(e);
    }

    /// Books of libraries the user no longer belongs to leave the device.
    async fn lost_libraries(
        &mut self,
        st: &mut SyncState,
        libs: &[LibraryId],
    ) -> Result<(), AppError> {
        let gone: Vec<LibraryId> = st
            .libraries
            .keys()
            .filter(|l| !libs.contains(l))
            .copied()
            .collect();
        if gone.is_empty() || self.room == 0 {
            return Ok(());
        }
        let entries = self
            .store
            .kobo_ledger_outside(self.device, libs, self.room)
            .await?;
        let done = entries.len() < self.room;
        let now = Timestamp::now();
        for mut e in entries {
            self.push(KoboItem::Removed {
                book: e.book_id,
                added: now,
                at: now,
            });
            e.removed = true;
            self.record(e);
        }
        if done {
            for l in gone {
                st.libraries.remove(&l);
            }
        }
        Ok(())
    }

    /// Returns whether every library's books were considered up to now.
    async fn books(&mut self, st: &mut SyncState, libs: &[LibraryId]) -> Result<bool, AppError> {
        for lib in libs {
            loop {
                if self.room == 0 {
                    return Ok(false);
                }
                let cursor = st.libraries.get(lib).copied().unwrap_or(0);
                let want = self.room.max(1);
                let rows = self.store.books_changed(*lib, cursor, want).await?;
                let exhausted = rows.len() < want;
                let ids: Vec<BookId> = rows.iter().map(|(_, b)| b.id).collect();
                let ledger = self.ledger_of(&ids).await?;
                let states: HashMap<BookId, ProgressState> = self
                    .store
                    .progress_states_of(self.user, &ids)
                    .await?
                    .into_iter()
                    .map(|s| (s.book_id, s))
                    .collect();
                for (seq, book) in rows {
                    let held = ledger.get(&book.id).filter(|e| !e.removed);
                    match (KoboBook::of(&book), held) {
                        (Some(kb), held) => {
                            let fp = kb.fingerprint();
                            let changed = match held {
                                None => Some(false),
                                Some(e) if e.archived => None,
                                Some(e) if e.fingerprint != fp => Some(true),
                                Some(_) => None,
                            };
                            if let Some(metadata_changed) = changed {
                                let weight = if metadata_changed { 2 } else { 1 };
                                if weight > self.room {
                                    return Ok(false);
                                }
                                let state = reading_state(
                                    book.id,
                                    book.added_at,
                                    states.get(&book.id),
                                    self.device,
                                );
                                self.record(KoboLedgerEntry {
                                    book_id: book.id,
                                    library_id: book.library_id,
                                    fingerprint: fp,
                                    removed: false,
                                    archived: false,
                                });
                                self.push(KoboItem::NewEntitlement {
                                    book: Box::new(kb),
                                    state: Box::new(state),
                                    metadata_changed,
                                });
                            }
                        }
                        (None, Some(e)) => {
                            if self.room == 0 {
                                return Ok(false);
                            }
                            let mut e = e.clone();
                            e.removed = true;
                            self.record(e);
                            self.push(KoboItem::Removed {
                                book: book.id,
                                added: book.added_at,
                                at: book.deleted_at.unwrap_or(book.updated_at),
                            });
                        }
                        (None, None) => {}
                    }
                    st.libraries.insert(*lib, seq);
                }
                if exhausted {
                    break;
                }
            }
        }
        Ok(true)
    }

    async fn reading_states(&mut self, st: &mut SyncState) -> Result<bool, AppError> {
        while self.room > 0 {
            let want = self.room;
            let changes = self
                .store
                .progress_changes(self.user, st.progress, want)
                .await?;
            let exhausted = changes.len() < want;
            // Only the latest state of each book matters.
            let mut latest: Vec<(BookId, ProgressState)> = Vec::new();
            let mut seen = HashSet::new();
            for (_, s) in changes.iter().rev() {
                if seen.insert(s.book_id) {
                    latest.push((s.book_id, s.clone()));
                }
            }
            latest.reverse();
            let ids: Vec<BookId> = latest.iter().map(|(b, _)| *b).collect();
            let ledger = self.ledger_of(&ids).await?;
            for (book, s) in latest {
                // The device wrote it itself, or does not have the book.
                if s.device_id == self.device
                    || !ledger.get(&book).is_some_and(|e| !e.removed && !e.archived)
                {
                    continue;
                }
                let added = match self.store.book(book).await? {
                    Some(b) => b.added_at,
                    None => continue,
                };
                let out = reading_state(book, added, Some(&s), self.device);
                self.push(KoboItem::ChangedReadingState(Box::new(out)));
            }
            if let Some((seq, _)) = changes.last() {
                st.progress = *seq;
            }
            if exhausted {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn shelves(&mut self, st: &mut SyncState, libs: &[LibraryId]) -> Result<(), AppError> {
        let mut held: HashSet<ShelfId> = if self.write.reset {
            HashSet::new()
        } else {
            self.store
                .kobo_tags(self.device)
                .await?
                .into_iter()
                .collect()
        };
        while self.room > 0 {
            let want = self.room;
            let shelves = self
                .store
                .shelves_changed(self.user, libs, st.shelves, want)
                .await?;
            let exhausted = shelves.len() < want;
            for mut shelf in shelves {
                st.shelves = shelf.change_seq;
                let has = held.contains(&shelf.id);
                if let Some(at) = shelf.deleted_at {
                    if has {
                        held.remove(&shelf.id);
                        self.write.tags.push((shelf.id, false));
                        self.push(KoboItem::DeletedTag { id: shelf.id, at });
                    }
                    continue;
                }
                let ledger = self.ledger_of(&shelf.books).await?;
                shelf
                    .books
                    .retain(|b| ledger.get(b).is_some_and(|e| !e.removed));
                held.insert(shelf.id);
                self.write.tags.push((shelf.id, true));
                self.push(KoboItem::Tag { shelf, new: !has });
            }
            if exhausted {
                break;
            }
        }
        if self.room == 0 {
            return Ok(());
        }
        // The feed above misses two things the held set shows: shelves of a library joined
        // since (written before the cursor) and shelves of a library left (no tombstone).
        let mut visible = self.store.shelves(self.user).await?;
        visible.extend(self.store.library_shelves(libs).await?);
        let ids: HashSet<ShelfId> = visible.iter().map(|s| s.id).collect();
        for mut shelf in visible {
            if self.room == 0 {
                return Ok(());
            }
            if held.contains(&shelf.id) {
                continue;
            }
            let ledger = self.ledger_of(&shelf.books).await?;
            shelf
                .books
                .retain(|b| ledger.get(b).is_some_and(|e| !e.removed));
            held.insert(shelf.id);
            self.write.tags.push((shelf.id, true));
            self.push(KoboItem::Tag { shelf, new: true });
        }
        let gone: Vec<ShelfId> = held
            .iter()
            .filter(|id| !ids.contains(id))
            .copied()
            .collect();
        let now = Timestamp::now();
        for id in gone {
            if self.room == 0 {
                break;
            }
            self.write.tags.push((id, false));
            self.push(KoboItem::DeletedTag { id, at: now });
        }
        Ok(())
    }
}

/// Builds the next page for `device` and commits its position. `restart`: the device came
/// without a token of its own, so it has nothing (factory reset, first sync, or a switch
/// from the Kobo store).
pub async fn next_page(
    store: &dyn Store,
    user: UserId,
    device: DeviceId,
    st: &mut SyncState,
    restart: bool,
    page_size: usize,
) -> Result<SyncPage, AppError> {
    let mut next = st.clone();
    let mut b = Builder {
        store,
        user,
        device,
        room: page_size.clamp(1, 100),
        items: Vec::new(),
        ledger: HashMap::new(),
        write: KoboSyncWrite::default(),
    };
    if restart {
        next = SyncState {
            generation: st.generation + 1,
            // Read before any book: every book goes out with its state as of now or later,
            // and anything written from here on follows as a changed state.
            progress: store.progress_head(user).await?,
            ..SyncState::default()
        };
        b.write.reset = true;
    }
    let mut libs: Vec<LibraryId> = store
        .libraries_of(user)
        .await?
        .into_iter()
        .map(|(l, _)| l.id)
        .collect();
    libs.sort();
    b.lost_libraries(&mut next, &libs).await?;
    let mut done = b.books(&mut next, &libs).await?;
    if done {
        done = b.reading_states(&mut next).await?;
    }
    if done {
        b.shelves(&mut next, &libs).await?;
    }
    let more = b.room == 0;
    b.write.state =
        serde_json::to_string(&next).map_err(|e| AppError::Unavailable(e.to_string()))?;
    b.write.expected = st.stored.clone();
    store.save_kobo_sync(device, &b.write).await?;
    next.stored = Some(b.write.state.clone());
    *st = next;
    Ok(SyncPage {
        items: b.items,
        more,
        generation: st.generation,
    })
}

/// The stored position of `device`, or the start.
pub async fn load(store: &dyn Store, device: DeviceId) -> Result<SyncState, AppError> {
    Ok(match store.kobo_sync_state(device).await? {
        Some(s) => SyncState {
            stored: Some(s.clone()),
            ..serde_json::from_str(&s).unwrap_or_default()
        },
        None => SyncState::default(),
    })
}
