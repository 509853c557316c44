//! Registration, login, refresh and logout. Rules for names and passwords live here, not in
//! the gateway, so every way of creating an account (HTTP, `dogear user add`) obeys them.

use super::passwords;
use super::ratelimit::{Limiter, RateLimiter};
use super::tokens::{JwtKeys, random_token, sha256_hex};
use crate::error::AppError;
use dogear_storage::{
    FamilyId, Library, LibraryId, LibraryKind, RefreshToken, RotateOutcome, Store, StoreError,
    Timestamp, User, UserId,
};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub struct AuthSettings {
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    pub registration_open: bool,
    /// Failed logins allowed per username (and, times four, per address) in the window.
    pub login_max_failures: usize,
    pub login_window_secs: u64,
    /// A refresh token presented again within this long of its rotation (two tabs refreshing
    /// at once) gets the same new pair instead of revoking the session.
    pub refresh_grace_secs: u64,
    /// How long a web reader's token opens one book's parts.
    pub reader_token_secs: i64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 30 * 24 * 3600,
            registration_open: true,
            login_max_failures: 5,
            login_window_secs: 15 * 60,
            refresh_grace_secs: 10,
            reader_token_secs: 12 * 3600,
        }
    }
}

/// How long a login for a name under attack (more failures from anywhere than one address
/// may make) is held before it is checked: slowed, never locked, so nobody can lock a reader
/// out by failing logins for their name from elsewhere (Vaultwarden's and Bitwarden's answer).
const UNDER_ATTACK_DELAY: Duration = Duration::from_secs(2);

/// Wrong device tokens one address may present within the login window before it is refused:
/// a revoked Kobo retrying its sync stays well under it, a guesser does not.
const DEVICE_TOKEN_FAILURES: usize = 60;

/// Rotations of refresh tokens in their grace period: the outcome of rotating a token,
/// shared with a second request that presents the same token meanwhile.
type Rotation = tokio::sync::watch::Receiver<Option<Result<Session, AppError>>>;

/// What a successful register, login or refresh hands back.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Session {
    pub user_id: UserId,
    pub username: String,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
}

pub struct Accounts {
    store: Arc<dyn Store>,
    keys: JwtKeys,
    settings: AuthSettings,
    /// Per username and address together: a reader's own address has its own budget, so
    /// failures elsewhere never lock them out.
    limiter: Limiter,
    /// Per client address, with four times the per-name budget: several people may share one.
    addr_limiter: Limiter,
    /// Per username from every address: over budget, logins for the name are slowed down.
    name_limiter: Limiter,
    /// Wrong device tokens (a Kobo's) per address: a guesser is refused for a while.
    token_limiter: RateLimiter,
    /// Recent rotations by the spent token's hash, for [`AuthSettings::refresh_grace_secs`].
    rotations: std::sync::Mutex<std::collections::HashMap<String, (Rotation, Instant)>>,
    /// Redis, when the nodes share one: login limits and the refresh grace.
    shared: Option<Arc<dogear_storage::shared::Shared>>,
    /// Verified against when the username is unknown, so both failures cost the same time.
    dummy_hash: tokio::sync::OnceCell<String>,
    /// Per user, the token epoch from which access tokens count (`u64::MAX`: none does, the
    /// account is disabled or deleted). Filled from the store at start and kept current by
    /// [`Accounts::poll_cutoffs`] and by this node's own changes.
    cutoffs: Cutoffs,
}

/// Per user, the token epoch from which access tokens count.
pub type Cutoffs = Arc<std::sync::RwLock<std::collections::HashMap<UserId, u64>>>;

/// Sets the user's cut-off to exactly `epoch` (what the store or another node says now).
pub fn set_cutoff(c: &Cutoffs, user: UserId, epoch: u64) {
    if let Ok(mut m) = c.write() {
        m.insert(user, epoch);
    }
}

/// What a refused access token of a cut-off session is told.
const SESSION_ENDED: &str =
    "this session has ended (password changed, account disabled or deleted); sign in again";

pub fn validate_username(name: &str) -> Result<(), AppError> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'));
    if !(3..=32).contains(&name.len()) || !ok_chars {
        return Err(AppError::bad(
            "username",
            "must be 3-32 characters of a-z, 0-9, '_', '.', '-'",
        ));
    }
    Ok(())
}

/// Takes the cut-offs the store recorded since `since` (by any node or command); returns
/// when to ask from next time (with some overlap: the clocks of nodes differ).
async fn poll_cutoffs(
    store: &dyn Store,
    cutoffs: &Cutoffs,
    since: Timestamp,
) -> Result<Timestamp, AppError> {
    let now = Timestamp::now();
    for (user, epoch) in store.token_cutoffs(since).await? {
        set_cutoff(cutoffs, user, epoch);
    }
    Ok(now.plus_secs(-10))
}

fn disabled() -> AppError {
    AppError::Forbidden(Cow::Borrowed(
        "this account is disabled; ask an administrator",
    ))
}

pub fn validate_password(pw: &str) -> Result<(), AppError> {
    let n = pw.chars().count();
    if !(8..=1024).contains(&n) {
        return Err(AppError::bad("password", "must be 8-1024 characters"));
    }
    Ok(())
}

pub fn validate_email(email: &str) -> Result<(), AppError> {
    let valid = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(a, d)| !a.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !email.chars().any(char::is_whitespace);
    if !valid {
        return Err(AppError::bad("email", "must be an email address"));
    }
    Ok(())
}

impl Accounts {
    pub fn new(store: Arc<dyn Store>, keys: JwtKeys, settings: AuthSettings) -> Accounts {
        let limiter = Limiter::new(
            "pair",
            settings.login_max_failures,
            Duration::from_secs(settings.login_window_secs),
        );
        let addr_limiter = Limiter::new(
            "addr",
            settings.login_max_failures.saturating_mul(4),
            Duration::from_secs(settings.login_window_secs),
        );
        let token_limiter = RateLimiter::new(
            DEVICE_TOKEN_FAILURES,
            Duration::from_secs(settings.login_window_secs),
        );
        let name_limiter = Limiter::new(
            "name",
            settings.login_max_failures.saturating_mul(4),
            Duration::from_secs(settings.login_window_secs),
        );
        Accounts {
            store,
            keys,
            settings,
            limiter,
            addr_limiter,
            name_limiter,
            token_limiter,
            rotations: Default::default(),
            shared: None,
            dummy_hash: tokio::sync::OnceCell::new(),
            cutoffs: Default::default(),
        }
    }

    /// Counts login failures in Redis, shared by every node that uses it, and shares the
    /// refresh grace there too.
    pub fn with_shared(mut self, shared: Option<Arc<dogear_storage::shared::Shared>>) -> Accounts {
        self.shared = shared.clone();
        if let Some(s) = shared {
            for l in [
                &mut self.limiter,
                &mut self.addr_limiter,
                &mut self.name_limiter,
            ] {
                l.share(s.clone());
            }
        }
        self
    }

    pub fn keys(&self) -> &JwtKeys {
        &self.keys
    }

    /// Creates a user and their personal library. `via_admin` bypasses closed registration
    /// (the `dogear user add` command).
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        email: Option<&str>,
        is_admin: bool,
        via_admin: bool,
    ) -> Result<User, AppError> {
        if !self.settings.registration_open && !via_admin {
            return Err(AppError::RegistrationClosed);
        }
        validate_username(username)?;
        validate_password(password)?;
        if let Some(e) = email {
            validate_email(e)?;
        }
        if self.store.user_by_name(username).await?.is_some() {
            return Err(AppError::UsernameTaken);
        }
        let now = Timestamp::now();
        let user = User {
            id: UserId::generate(),
            username: username.to_string(),
            email: email.map(str::to_string),
            password_hash: passwords::hash(password.to_string()).await?,
            is_admin,
            created_at: now,
            display_name: None,
            token_epoch: 0,
            disabled_at: None,
            visibility: Default::default(),
        };
        let library = Library {
            id: LibraryId::generate(),
            name: format!("{username}'s library"),
            kind: LibraryKind::Personal,
            owner_id: user.id,
            created_at: now,
            pending_owner: None,
        };
        match self.store.create_user(&user, &library).await {
            Ok(()) => Ok(user),
            Err(StoreError::Conflict(_)) => Err(AppError::UsernameTaken),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn register(
        &self,
        username: &str,
        password: &str,
        email: Option<&str>,
    ) -> Result<Session, AppError> {
        let user = self
            .create_user(username, password, email, false, false)
            .await?;
        self.new_session(&user, FamilyId::generate()).await
    }

    pub async fn login(
        &self,
        username: &str,
        password: &str,
        addr: Option<&str>,
    ) -> Result<Session, AppError> {
        let user = self.store.user_by_name(username).await?;
        let phc = user.as_ref().map(|u| u.password_hash.clone());
        let ok = self.guarded("u", username, password, phc, addr).await?;
        match (ok, user) {
            (true, Some(u)) if u.disabled_at.is_some() => Err(disabled()),
            (true, Some(u)) => self.new_session(&u, FamilyId::generate()).await,
            _ => Err(AppError::InvalidCredentials),
        }
    }

    /// A user name and password checked as a login is (the same budgets), without making a
    /// session: HTTP Basic on every request of an OPDS app. `None`: wrong.
    pub async fn verify_password(
        &self,
        username: &str,
        password: &str,
        addr: Option<&str>,
    ) -> Result<Option<UserId>, AppError> {
        let user = self.store.user_by_name(username).await?;
        let phc = user.as_ref().map(|u| u.password_hash.clone());
        let ok = self.guarded("u", username, password, phc, addr).await?;
        match user.filter(|_| ok) {
            Some(u) if u.disabled_at.is_some() => Err(disabled()),
            other => Ok(other.map(|u| u.id)),
        }
    }

    /// A sign-in by another protocol (KOReader's user name and key): the same budgets as
    /// [`Accounts::login`] (per name and address, per address, per name), under the name's own
    /// keys; `secret` is checked against `phc`, or against a dummy hash when there is no
    /// such login, so both failures cost the same time. `Ok(false)`: wrong.
    pub async fn check_secret(
        &self,
        name: &str,
        secret: &str,
        phc: Option<String>,
        addr: Option<&str>,
    ) -> Result<bool, AppError> {
        self.guarded("k", name, secret, phc, addr).await
    }

    /// Checks `secret` against `phc` (a dummy hash when `None`) within the failure budgets
    /// of `name` in namespace `ns`: per name and address (a reader's own address has its
    /// own budget, so failures elsewhere never lock them out), per address (four times the
    /// per-name budget: several people may share one), and per name from every address
    /// (over budget, attempts are slowed down). `429` while over a budget.
    async fn guarded(
        &self,
        ns: &str,
        name: &str,
        secret: &str,
        phc: Option<String>,
        addr: Option<&str>,
    ) -> Result<bool, AppError> {
        let now = Instant::now();
        let name_key = format!("{ns}:{name}");
        let pair_key = format!("{ns}:{name}|a:{}", addr.unwrap_or("-"));
        let addr_key = addr.map(|a| format!("a:{a}"));
        let limited = match self.limiter.check(&pair_key, now).await {
            Some(s) => Some(s),
            None => match addr_key.as_deref() {
                Some(k) => self.addr_limiter.check(k, now).await,
                None => None,
            },
        };
        if let Some(secs) = limited {
            return Err(AppError::RateLimited {
                retry_after_secs: secs,
            });
        }
        if self.name_limiter.check(&name_key, now).await.is_some() {
            tokio::time::sleep(UNDER_ATTACK_DELAY).await;
        }
        let ok = match phc {
            Some(phc) => passwords::verify(secret.to_string(), phc).await,
            None => {
                let dummy = self
                    .dummy_hash
                    .get_or_try_init(|| passwords::hash("dogear-timing-equaliser".into()))
                    .await?;
                passwords::verify(secret.to_string(), dummy.clone()).await;
                false
            }
        };
        if ok {
            self.limiter.clear(&pair_key).await;
        } else {
            self.limiter.fail(&pair_key, now).await;
            self.name_limiter.fail(&name_key, now).await;
            if let Some(k) = addr_key {
                self.addr_limiter.fail(&k, now).await;
            }
        }
        Ok(ok)
    }

    /// `429` for a reader, or an address, that has typed too many wrong invite codes
    /// lately (each has the login budget; an address four times it, as for logins).
    pub async fn check_invite_guesser(
        &self,
        user: UserId,
        addr: Option<&str>,
    ) -> Result<(), AppError> {
        let now = Instant::now();
        let mut limited = self.limiter.check(&format!("inv:u:{user}"), now).await;
        if limited.is_none()
            && let Some(a) = addr
        {
            limited = self.addr_limiter.check(&format!("inv:a:{a}"), now).await;
        }
        match limited {
            Some(secs) => Err(AppError::RateLimited {
                retry_after_secs: secs,
            }),
            None => Ok(()),
        }
    }

    /// Counts a wrong invite code against the reader and their address.
    pub async fn invite_failed(&self, user: UserId, addr: Option<&str>) {
        let now = Instant::now();
        self.limiter.fail(&format!("inv:u:{user}"), now).await;
        if let Some(a) = addr {
            self.addr_limiter.fail(&format!("inv:a:{a}"), now).await;
        }
    }

    /// `429` for an address that has presented too many wrong device tokens lately.
    pub fn check_device_token_guesser(&self, addr: Option<&str>) -> Result<(), AppError> {
        let key = format!("t:{}", addr.unwrap_or("-"));
        match self.token_limiter.check(&key, Instant::now()) {
            Some(secs) => Err(AppError::RateLimited {
                retry_after_secs: secs,
            }),
            None => Ok(()),
        }
    }

    /// Counts a wrong device token from `addr`; true when this one used up its budget (the
    /// moment worth one log line, rather than one per guess).
    pub fn device_token_failed(&self, addr: Option<&str>) -> bool {
        let key = format!("t:{}", addr.unwrap_or("-"));
        let now = Instant::now();
        self.token_limiter.fail(&key, now);
        self.token_limiter.check(&key, now).is_some()
    }

    /// Rotates a refresh token. The same token presented again within the grace period (two
    /// tabs refreshing at once, a retry after a lost answer) gets the same new pair; after it,
    /// a spent token revokes its whole session, as before.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Session, AppError> {
        let hash = sha256_hex(refresh_token);
        let grace = Duration::from_secs(self.settings.refresh_grace_secs);
        if let Some(shared) = &self.shared
            && !grace.is_zero()
        {
            match self
                .refresh_shared(shared, refresh_token, &hash, grace)
                .await
            {
                Ok(outcome) => return outcome,
                Err(e) => {
                    metrics::counter!("dogear_redis_fallbacks_total", "what" => "refresh_grace")
                        .increment(1);
                    tracing::warn!(error = %e, "redis unavailable: the refresh grace holds on this node only");
                }
            }
        }
        let joined = {
            let Ok(mut map) = self.rotations.lock() else {
                return self.rotate(refresh_token).await;
            };
            map.retain(|_, (_, at)| at.elapsed() < grace);
            match map.get(&hash) {
                Some((rx, _)) => Err(rx.clone()),
                None if grace.is_zero() => Ok(None),
                None => {
                    let (tx, rx) = tokio::sync::watch::channel(None);
                    map.insert(hash.clone(), (rx, Instant::now()));
                    Ok(Some(tx))
                }
            }
        };
        match joined {
            Ok(leader) => {
                let outcome = self.rotate(refresh_token).await;
                if let Some(tx) = leader {
                    if outcome.is_err()
                        && let Ok(mut map) = self.rotations.lock()
                    {
                        map.remove(&hash);
                    }
                    let _ = tx.send(Some(outcome.clone()));
                }
                outcome
            }
            Err(mut rx) => {
                // Owned before any await: the watch's read guard must not be held across one.
                let waited = match tokio::time::timeout(
                    Duration::from_secs(10),
                    rx.wait_for(Option::is_some),
                )
                .await
                {
                    Ok(Ok(shared)) => Ok(Ok(shared.clone())),
                    Ok(Err(e)) => Ok(Err(e)),
                    Err(e) => Err(e),
                };
                match waited {
                    Ok(Ok(shared)) => shared.unwrap_or(Err(AppError::Unauthorized(Cow::Borrowed(
                        "invalid refresh token",
                    )))),
                    // The first request was dropped before it answered (its client went
                    // away): rotate here, as if this were the first.
                    Ok(Err(_)) => {
                        if let Ok(mut map) = self.rotations.lock() {
                            map.remove(&hash);
                        }
                        self.rotate(refresh_token).await
                    }
                    Err(_) => Err(AppError::Unavailable(
                        "a refresh with this token is still running".into(),
                    )),
                }
            }
        }
    }

    /// The refresh grace across nodes: the first node to claim the token in Redis rotates it
    /// and leaves the new pair there for the grace period; another node presented the same
    /// token meanwhile answers with that pair. `Err`: Redis did not answer (the caller falls
    /// back to this node's own grace). The pair is kept in Redis, as the refresh token itself
    /// is: Redis belongs on the same private network as the nodes.
    async fn refresh_shared(
        &self,
        shared: &dogear_storage::shared::Shared,
        refresh_token: &str,
        hash: &str,
        grace: Duration,
    ) -> Result<Result<Session, AppError>, dogear_storage::shared::SharedError> {
        const PENDING: &str = "pending";
        let key = format!("rot:{hash}");
        if shared.claim(&key, PENDING, grace).await? {
            let outcome = self.rotate(refresh_token).await;
            match &outcome {
                Ok(s) => {
                    if let Ok(json) = serde_json::to_string(s) {
                        shared.put(&key, &json, grace).await?;
                    }
                }
                // Nothing to share: the next presentation decides for itself.
                Err(_) => {
                    let _ = shared.clear(&key).await;
                }
            }
            return Ok(outcome);
        }
        // Another request (on any node) is rotating it: wait for its answer.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match shared.get_string(&key).await? {
                Some(v) if v == PENDING => {}
                Some(v) => {
                    return Ok(serde_json::from_str::<Session>(&v).map_err(|_| {
                        AppError::Unauthorized(Cow::Borrowed("invalid refresh token"))
                    }));
                }
                // The first one failed (or the grace passed): decide here.
                None => return Ok(self.rotate(refresh_token).await),
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(Err(AppError::Unavailable(
            "a refresh with this token is still running".into(),
        )))
    }

    async fn rotate(&self, refresh_token: &str) -> Result<Session, AppError> {
        let now = Timestamp::now();
        let new_token = random_token()?;
        let expires_at = now.plus_secs(self.settings.refresh_ttl_secs);
        match self
            .store
            .rotate_refresh_token(
                &sha256_hex(refresh_token),
                &sha256_hex(&new_token),
                now,
                expires_at,
            )
            .await?
        {
            RotateOutcome::Rotated { user_id } => {
                let user = self
                    .store
                    .user(user_id)
                    .await?
                    .filter(|u| u.disabled_at.is_none())
                    .ok_or(AppError::Unauthorized(Cow::Borrowed(SESSION_ENDED)))?;
                Ok(Session {
                    user_id,
                    username: user.username,
                    access_token: self.keys.issue(
                        user_id,
                        user.token_epoch,
                        now,
                        self.settings.access_ttl_secs,
                    )?,
                    refresh_token: new_token,
                    expires_in: self.settings.access_ttl_secs,
                })
            }
            RotateOutcome::Reused => Err(AppError::Unauthorized(Cow::Borrowed(
                "refresh token was already used; its session has been revoked",
            ))),
            RotateOutcome::Invalid => Err(AppError::Unauthorized(Cow::Borrowed(
                "invalid refresh token",
            ))),
        }
    }

    pub async fn logout(&self, refresh_token: &str) -> Result<(), AppError> {
        self.store
            .revoke_refresh_family(&sha256_hex(refresh_token))
            .await?;
        Ok(())
    }

    pub fn authenticate(&self, access_token: &str) -> Result<UserId, AppError> {
        let (user, epoch) = self.keys.verify(access_token)?;
        if epoch < self.cutoff(user) {
            return Err(AppError::Unauthorized(Cow::Borrowed(SESSION_ENDED)));
        }
        Ok(user)
    }

    /// A reader token for one book (see [`JwtKeys::issue_reader`]), valid for
    /// `reader_token_secs`, in the user's current token epoch.
    pub async fn reader_token(
        &self,
        user: UserId,
        book: dogear_storage::BookId,
    ) -> Result<String, AppError> {
        let epoch = match self.store.user(user).await? {
            Some(u) => u.token_epoch,
            None => return Err(AppError::Unauthorized(Cow::Borrowed(SESSION_ENDED))),
        };
        self.keys.issue_reader(
            user,
            book,
            epoch,
            Timestamp::now(),
            self.settings.reader_token_secs,
        )
    }

    /// The user and book of a reader token that is still good: unexpired, and of an epoch
    /// no password change or disabled account has ended.
    pub fn authenticate_reader(
        &self,
        token: &str,
    ) -> Result<(UserId, dogear_storage::BookId), AppError> {
        let (user, book, epoch) = self.keys.verify_reader(token)?;
        if epoch < self.cutoff(user) {
            return Err(AppError::NotFound(Cow::Borrowed("book")));
        }
        Ok((user, book))
    }

    /// The epoch from which the user's access tokens count (0 when none was cut off).
    fn cutoff(&self, user: UserId) -> u64 {
        self.cutoffs
            .read()
            .ok()
            .and_then(|m| m.get(&user).copied())
            .unwrap_or(0)
    }

    /// True when nothing of the user may sign in any more (disabled or deleted): device
    /// tokens (Kobo, KOReader, OPDS) check this too.
    pub fn is_cut_off(&self, user: UserId) -> bool {
        self.cutoff(user) == u64::MAX
    }

    /// From now on, refuses the user's access tokens of epochs before `epoch` (`u64::MAX`:
    /// all of them).
    pub fn cut_off(&self, user: UserId, epoch: u64) {
        if let Ok(mut m) = self.cutoffs.write() {
            let e = m.entry(user).or_insert(0);
            *e = (*e).max(epoch);
        }
    }

    /// Sets the user's cut-off to exactly `epoch` (an account enabled again: lowered from
    /// the `MAX` of its disabled time).
    pub fn uncut(&self, user: UserId, epoch: u64) {
        set_cutoff(&self.cutoffs, user, epoch);
    }

    pub fn cutoffs_handle(&self) -> Cutoffs {
        self.cutoffs.clone()
    }

    /// Loads the cut-offs that may still matter (those younger than an access token), then
    /// looks for new ones in the store every 2 s (made by another node or a `dogear user`
    /// command) for as long as this `Accounts` lives.
    pub async fn start_cutoff_poll(&self) -> Result<(), AppError> {
        let store = self.store.clone();
        let since = Timestamp::now().plus_secs(-(self.settings.access_ttl_secs + 60));
        let mut next = poll_cutoffs(&*store, &self.cutoffs, since).await?;
        let cutoffs = Arc::downgrade(&self.cutoffs);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(2));
            loop {
                every.tick().await;
                let Some(c) = cutoffs.upgrade() else { return };
                match poll_cutoffs(&*store, &c, next).await {
                    Ok(n) => next = n,
                    Err(e) => tracing::debug!(error = %e, "token cut-offs not read"),
                }
            }
        });
        Ok(())
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// Checks the user's password within the login budgets (a wrong one counts as a failed
    /// login): for changes that need the password again.
    pub async fn confirm_password(
        &self,
        user: &User,
        password: &str,
        field: &str,
        addr: Option<&str>,
    ) -> Result<(), AppError> {
        let ok = self
            .guarded(
                "u",
                &user.username,
                password,
                Some(user.password_hash.clone()),
                addr,
            )
            .await?;
        if ok {
            Ok(())
        } else {
            Err(AppError::Forbidden(Cow::Owned(format!(
                "{field}: the password is wrong"
            ))))
        }
    }

    /// A new session for a user (after a password change, for the client that made it).
    pub async fn session_for(&self, user: &User) -> Result<Session, AppError> {
        self.new_session(user, FamilyId::generate()).await
    }

    async fn new_session(&self, user: &User, family: FamilyId) -> Result<Session, AppError> {
        let (user_id, username, epoch) = (user.id, user.username.clone(), user.token_epoch);
        let now = Timestamp::now();
        let refresh = random_token()?;
        self.store
            .insert_refresh_token(&RefreshToken {
                hash: sha256_hex(&refresh),
                user_id,
                family_id: family,
                created_at: now,
                expires_at: now.plus_secs(self.settings.refresh_ttl_secs),
            })
            .await?;
        Ok(Session {
            user_id,
            username,
            access_token: self
                .keys
                .issue(user_id, epoch, now, self.settings.access_ttl_secs)?,
            refresh_token: refresh,
            expires_in: self.settings.access_ttl_secs,
        })
    }
}
