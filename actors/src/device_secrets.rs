//! What every kind of device credential (a Kobo's token, a KOReader login, an OPDS catalog
//! link's token) does alike: made together with its device through the user's actor, listed
//! beside its device, revoked by deleting the device, and a token looked up by its hash
//! through a short-lived cache.

use crate::app::Dogear;
use crate::device_cache::{DeviceCache, OfDevice};
use crate::error::AppError;
use crate::messages::DeviceSecret;
use crate::placement::reply;
use crate::user_actor::{UserOp, UserReply};
use dogear_storage::{Device, DeviceId, DeviceKind, UserId};
use std::borrow::Cow;
use std::future::Future;

/// Credentials paired with their devices (those whose device still exists), in the
/// credentials' order.
pub(crate) fn with_devices<T: OfDevice>(devices: &[Device], held: Vec<T>) -> Vec<(Device, T)> {
    held.into_iter()
        .filter_map(|t| {
            let d = devices.iter().find(|d| d.id == t.device())?.clone();
            Some((d, t))
        })
        .collect()
}

impl Dogear {
    /// A new device of `kind` named `name` (errors name `field`) with its secret, if any,
    /// stored together by the user's actor.
    pub(crate) async fn create_device_with(
        &self,
        user: UserId,
        (name, field): (&str, &str),
        kind: DeviceKind,
        secret: Option<DeviceSecret>,
    ) -> Result<Device, AppError> {
        let name = crate::app::device_name(name, field)?;
        reply!(
            self.placement
                .ask_user(user, UserOp::CreateDevice { name, kind, secret })
                .await,
            UserReply::Device
        )
    }

    /// Deletes `device` if one of `held` (the user's credentials of one kind) is its;
    /// `NotFound(what)` otherwise.
    pub(crate) async fn revoke_held<T: OfDevice>(
        &self,
        user: UserId,
        device: DeviceId,
        held: &[T],
        what: &'static str,
    ) -> Result<(), AppError> {
        if !held.iter().any(|t| t.device() == device) {
            return Err(AppError::NotFound(Cow::Borrowed(what)));
        }
        self.delete_device(user, device).await
    }
}

/// The credential a device token stands for: malformed tokens are refused before any
/// look-up, answers are kept in `cache` (revocations drop them), `fetch` reads the store
/// by the token's hash.
pub(crate) async fn by_token<T, F, Fut>(
    cache: &DeviceCache<T>,
    secret: &str,
    fetch: F,
) -> Result<Option<T>, AppError>
where
    T: OfDevice + Clone,
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<Option<T>, dogear_storage::StoreError>>,
{
    if !crate::kobo::token::well_formed(secret) {
        return Ok(None);
    }
    let hash = crate::kobo::token::hash(secret);
    if let Some(t) = cache.get(&hash) {
        return Ok(Some(t));
    }
    let found = fetch(hash.clone()).await?;
    if let Some(t) = &found {
        cache.put(hash, t.clone());
    }
    Ok(found)
}
