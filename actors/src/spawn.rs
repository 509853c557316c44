//! Dogear's actors for placement's keys: a `UserActor` for `user:`, a `DeviceActor` for
//! `device:`, a `LibraryActor` for `library:`. This module knows both sides; placement only
//! knows the [`Spawner`] it is given.

use crate::cluster::Cluster;
use crate::device_actor::{DeviceActor, DeviceArgs};
use crate::error::AppError;
use crate::library_actor::{LibraryActor, LibraryArgs};
use crate::messages::{DeviceMsg, LibraryMsg, UserMsg};
use crate::placement::{
    Activation, ActorSettings, Placement, Spawner, activate, device_key, library_key, user_key,
};
use crate::user_actor::{UserActor, UserArgs};
use dogear_storage::{DeviceId, LibraryId, Store, UserId};
use ractor::ActorCell;
use std::sync::Arc;

/// The actors Dogear runs for its keys.
pub struct Actors;

impl Spawner for Actors {
    fn user(&self, id: UserId, placement: Placement, sup: ActorCell) -> Activation<UserMsg> {
        Box::pin(activate(user_key(id), sup, move || {
            (
                UserActor,
                UserArgs {
                    user: id,
                    placement: placement.clone(),
                },
            )
        }))
    }

    fn device(
        &self,
        user: UserId,
        id: DeviceId,
        placement: Placement,
        sup: ActorCell,
    ) -> Activation<DeviceMsg> {
        Box::pin(activate(device_key(id), sup, move || {
            (
                DeviceActor,
                DeviceArgs {
                    user,
                    device: id,
                    placement: placement.clone(),
                },
            )
        }))
    }

    fn library(
        &self,
        id: LibraryId,
        placement: Placement,
        sup: ActorCell,
    ) -> Activation<LibraryMsg> {
        Box::pin(activate(library_key(id), sup, move || {
            (
                LibraryActor,
                LibraryArgs {
                    library: id,
                    placement: placement.clone(),
                },
            )
        }))
    }
}

impl Placement {
    /// Placement with Dogear's actors.
    pub async fn start(
        store: Arc<dyn Store>,
        settings: ActorSettings,
        cluster: Option<Cluster>,
    ) -> Result<Placement, AppError> {
        Placement::start_with(store, settings, cluster, Arc::new(Actors)).await
    }
}
