//! Following readers, and what a reader's profile shows to whom.
//!
//! A profile's visibility decides who sees its data (display name, public shelves, finished
//! books, ratings and reviews): `public`, everyone signed in; `followers`, those who follow
//! (anyone may follow); `private` (the default), followers the reader approved (following is a
//! request). Others see the name alone. A block hides each from the other entirely (each is
//! "not found" to the other) and ends every follow and request between them. The rules are
//! [`may_see`] and [`follow_kind`]; the relations are stored as rows (`Store::relate`).

use crate::app::Dogear;
use crate::error::AppError;
use dogear_storage::{
    BookId, BookStatus, Related, Relation, RelationKind, RelationOp, Shelf, Timestamp, User,
    UserBook, UserId, Visibility,
};
use std::borrow::Cow;

/// Where the caller stands with a reader they follow or asked to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowState {
    Following,
    Requested,
}

impl FollowState {
    pub fn as_str(self) -> &'static str {
        match self {
            FollowState::Following => "following",
            FollowState::Requested => "requested",
        }
    }
}

/// What following a reader of this visibility makes: a follow, or a request they approve.
pub fn follow_kind(v: Visibility) -> RelationKind {
    match v {
        Visibility::Private => RelationKind::Request,
        Visibility::Public | Visibility::Followers => RelationKind::Follow,
    }
}

/// Whether `viewer` sees the data of `owner`'s profile, given the relations between them.
pub fn may_see(viewer: UserId, owner: &User, between: &[Relation]) -> bool {
    if viewer == owner.id {
        return true;
    }
    if between.iter().any(|r| r.kind == RelationKind::Block) {
        return false;
    }
    match owner.visibility {
        Visibility::Public => true,
        Visibility::Followers | Visibility::Private => between
            .iter()
            .any(|r| r.kind == RelationKind::Follow && r.from == viewer && r.to == owner.id),
    }
}

/// A book on a profile.
#[derive(Clone, Debug)]
pub struct ProfileBook {
    pub id: BookId,
    pub title: String,
    pub authors: Vec<String>,
    pub record: UserBook,
}

/// A profile as `viewer` may see it: `data` is `None` unless [`may_see`].
#[derive(Clone, Debug)]
pub struct Profile {
    pub user: User,
    pub you_follow: Option<FollowState>,
    pub follows_you: bool,
    pub data: Option<ProfileData>,
}

#[derive(Clone, Debug)]
pub struct ProfileData {
    pub followers: usize,
    pub following: usize,
    pub shelves: Vec<(Shelf, Vec<ProfileBook>)>,
    pub finished: Vec<ProfileBook>,
    pub rated: Vec<ProfileBook>,
}

/// The most books each list of a profile shows.
const PROFILE_BOOKS: usize = 200;

impl Dogear {
    /// A live, enabled reader by name who has not blocked `viewer` (nor been blocked by
    /// them): anyone else is "not found".
    async fn reachable(
        &self,
        viewer: UserId,
        name: &str,
    ) -> Result<(User, Vec<Relation>), AppError> {
        let not_found = || AppError::NotFound(Cow::Borrowed("user"));
        let u = self
            .store
            .user_by_name(name)
            .await?
            .filter(|u| u.disabled_at.is_none())
            .ok_or_else(not_found)?;
        let between = self.store.relations_between(viewer, u.id).await?;
        if u.id != viewer && between.iter().any(|r| r.kind == RelationKind::Block) {
            return Err(not_found());
        }
        Ok((u, between))
    }

    pub async fn follow(&self, me: UserId, name: &str) -> Result<FollowState, AppError> {
        let (them, between) = self.reachable(me, name).await?;
        if them.id == me {
            return Err(AppError::bad("username", "you cannot follow yourself"));
        }
        let mine = |k| between.iter().any(|r| r.from == me && r.kind == k);
        if mine(RelationKind::Follow) {
            return Ok(FollowState::Following);
        }
        if mine(RelationKind::Request) {
            return Ok(FollowState::Requested);
        }
        let kind = follow_kind(them.visibility);
        self.store
            .relate(&[RelationOp::Put(Relation {
                from: me,
                to: them.id,
                kind,
                created_at: Timestamp::now(),
            })])
            .await?;
        Ok(match kind {
            RelationKind::Request => FollowState::Requested,
            _ => FollowState::Following,
        })
    }

    /// Stops following (or withdraws a request).
    pub async fn unfollow(&self, me: UserId, name: &str) -> Result<(), AppError> {
        let (them, _) = self.reachable(me, name).await?;
        self.store
            .relate(&[
                del(me, them.id, RelationKind::Follow),
                del(me, them.id, RelationKind::Request),
            ])
            .await?;
        Ok(())
    }

    /// Those the user follows (`incoming`: who follow them), or asked to follow / asked them.
    pub async fn relations(
        &self,
        me: UserId,
        kind: RelationKind,
        incoming: bool,
    ) -> Result<Vec<Related>, AppError> {
        Ok(self.store.relations_of(me, kind, incoming).await?)
    }

    /// Approves (or rejects) a request to follow the user.
    pub async fn answer_request(
        &self,
        me: UserId,
        name: &str,
        approve: bool,
    ) -> Result<(), AppError> {
        let (them, between) = self.reachable(me, name).await?;
        if !between
            .iter()
            .any(|r| r.from == them.id && r.kind == RelationKind::Request)
        {
            return Err(AppError::NotFound(Cow::Borrowed("follow request")));
        }
        let mut ops = vec![del(them.id, me, RelationKind::Request)];
        if approve {
            ops.push(RelationOp::Put(Relation {
                from: them.id,
                to: me,
                kind: RelationKind::Follow,
                created_at: Timestamp::now(),
            }));
        }
        self.store.relate(&ops).await?;
        Ok(())
    }

    pub async fn remove_follower(&self, me: UserId, name: &str) -> Result<(), AppError> {
        let (them, _) = self.reachable(me, name).await?;
        self.store
            .relate(&[del(them.id, me, RelationKind::Follow)])
            .await?;
        Ok(())
    }

    /// Blocks a reader: every follow and request between the two ends, and each is "not
    /// found" to the other until the block is lifted.
    pub async fn block(&self, me: UserId, name: &str) -> Result<(), AppError> {
        let (them, _) = self.reachable(me, name).await?;
        if them.id == me {
            return Err(AppError::bad("username", "you cannot block yourself"));
        }
        let mut ops = Vec::new();
        for (a, b) in [(me, them.id), (them.id, me)] {
            ops.push(del(a, b, RelationKind::Follow));
            ops.push(del(a, b, RelationKind::Request));
        }
        ops.push(RelationOp::Put(Relation {
            from: me,
            to: them.id,
            kind: RelationKind::Block,
            created_at: Timestamp::now(),
        }));
        self.store.relate(&ops).await?;
        Ok(())
    }

    /// Lifts the user's block of `name` (their own block of the user, if any, stays).
    pub async fn unblock(&self, me: UserId, name: &str) -> Result<(), AppError> {
        let blocked = self
            .store
            .relations_of(me, RelationKind::Block, false)
            .await?
            .into_iter()
            .find(|r| r.username == name)
            .ok_or(AppError::NotFound(Cow::Borrowed("block")))?;
        self.store
            .relate(&[del(me, blocked.relation.to, RelationKind::Block)])
            .await?;
        Ok(())
    }

    /// Sets who sees the user's profile; opening it up turns waiting requests into follows.
    pub async fn set_visibility(&self, me: UserId, v: Visibility) -> Result<User, AppError> {
        let mut u = self.me(me).await?;
        u.visibility = v;
        match self.store.update_user(&u).await? {
            true => {}
            false => return Err(AppError::NotFound(Cow::Borrowed("user"))),
        }
        if follow_kind(v) == RelationKind::Follow {
            let waiting = self
                .store
                .relations_of(me, RelationKind::Request, true)
                .await?;
            let mut ops = Vec::new();
            for r in waiting {
                ops.push(del(r.relation.from, me, RelationKind::Request));
                ops.push(RelationOp::Put(Relation {
                    kind: RelationKind::Follow,
                    created_at: Timestamp::now(),
                    ..r.relation
                }));
            }
            if !ops.is_empty() {
                self.store.relate(&ops).await?;
            }
        }
        Ok(u)
    }

    /// A reader's profile as `viewer` may see it.
    pub async fn profile(&self, viewer: UserId, name: &str) -> Result<Profile, AppError> {
        let (user, between) = self.reachable(viewer, name).await?;
        let you_follow = between
            .iter()
            .filter(|r| r.from == viewer && r.to == user.id)
            .find_map(|r| match r.kind {
                RelationKind::Follow => Some(FollowState::Following),
                RelationKind::Request => Some(FollowState::Requested),
                RelationKind::Block => None,
            });
        let follows_you = between
            .iter()
            .any(|r| r.from == user.id && r.to == viewer && r.kind == RelationKind::Follow);
        let data = if may_see(viewer, &user, &between) {
            Some(self.profile_data(&user).await?)
        } else {
            None
        };
        Ok(Profile {
            user,
            you_follow,
            follows_you,
            data,
        })
    }

    async fn profile_data(&self, user: &User) -> Result<ProfileData, AppError> {
        let s = &self.store;
        let followers = s
            .relations_of(user.id, RelationKind::Follow, true)
            .await?
            .len();
        let following = s
            .relations_of(user.id, RelationKind::Follow, false)
            .await?
            .len();
        let mut records = Vec::new();
        let mut after = None;
        loop {
            let page = s.user_books(user.id, after, 500).await?;
            after = page.last().map(|r| r.book_id);
            let done = page.len() < 500;
            records.extend(page);
            if done || records.len() > 20_000 {
                break;
            }
        }
        let mut finished: Vec<&UserBook> = records
            .iter()
            .filter(|r| r.status == Some(BookStatus::Finished))
            .collect();
        finished.sort_by_key(|r| std::cmp::Reverse(r.finished_at.or(r.status_at)));
        let mut rated: Vec<&UserBook> = records.iter().filter(|r| r.rating.is_some()).collect();
        rated.sort_by_key(|r| std::cmp::Reverse(r.updated_at));
        let finished = self
            .profile_books(finished.into_iter().take(PROFILE_BOOKS))
            .await?;
        let rated = self
            .profile_books(rated.into_iter().take(PROFILE_BOOKS))
            .await?;
        let mut shelves = Vec::new();
        for sh in s.shelves(user.id).await?.into_iter().filter(|sh| sh.public) {
            let blank = |b: &BookId| UserBook::empty(user.id, *b);
            let recs: Vec<UserBook> = sh.books.iter().take(PROFILE_BOOKS).map(blank).collect();
            let books = self.profile_books(recs.iter()).await?;
            shelves.push((sh, books));
        }
        Ok(ProfileData {
            followers,
            following,
            shelves,
            finished,
            rated,
        })
    }

    /// The live books of these records, with their titles.
    async fn profile_books<'a>(
        &self,
        records: impl Iterator<Item = &'a UserBook>,
    ) -> Result<Vec<ProfileBook>, AppError> {
        let mut out = Vec::new();
        for r in records {
            if let Some(b) = self.store.book(r.book_id).await?
                && b.deleted_at.is_none()
            {
                out.push(ProfileBook {
                    id: b.id,
                    title: b.title,
                    authors: b.authors,
                    record: r.clone(),
                });
            }
        }
        Ok(out)
    }
}

fn del(from: UserId, to: UserId, kind: RelationKind) -> RelationOp {
    RelationOp::Delete { from, to, kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(v: Visibility) -> User {
        User {
            id: UserId::generate(),
            username: "owner".into(),
            email: None,
            password_hash: String::new(),
            is_admin: false,
            created_at: Timestamp::now(),
            display_name: None,
            token_epoch: 0,
            disabled_at: None,
            visibility: v,
        }
    }
    fn rel(from: UserId, to: UserId, kind: RelationKind) -> Relation {
        Relation {
            from,
            to,
            kind,
            created_at: Timestamp::now(),
        }
    }

    #[test]
    fn who_sees_a_profile() {
        let viewer = UserId::generate();
        for v in [
            Visibility::Public,
            Visibility::Followers,
            Visibility::Private,
        ] {
            let owner = user(v);
            assert!(may_see(owner.id, &owner, &[]), "the owner always");
            assert_eq!(may_see(viewer, &owner, &[]), v == Visibility::Public);
            let follows = [rel(viewer, owner.id, RelationKind::Follow)];
            assert!(may_see(viewer, &owner, &follows), "{v}: a follower");
            let asked = [rel(viewer, owner.id, RelationKind::Request)];
            assert_eq!(may_see(viewer, &owner, &asked), v == Visibility::Public);
            let followed_by_owner = [rel(owner.id, viewer, RelationKind::Follow)];
            assert_eq!(
                may_see(viewer, &owner, &followed_by_owner),
                v == Visibility::Public,
                "being followed is not following"
            );
            for block in [
                rel(owner.id, viewer, RelationKind::Block),
                rel(viewer, owner.id, RelationKind::Block),
            ] {
                assert!(!may_see(viewer, &owner, &[block, follows[0].clone()]));
            }
        }
        assert_eq!(follow_kind(Visibility::Private), RelationKind::Request);
        assert_eq!(follow_kind(Visibility::Followers), RelationKind::Follow);
    }
}
