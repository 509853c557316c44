//! One supervisor per actor kind. It hears when a child fails and has it restarted; a child
//! that stops normally (idle) is simply gone until its key is used again.

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::sync::Arc;

/// Re-activates the actor with this key (its registry name).
pub type Restarter = Arc<dyn Fn(String) + Send + Sync>;

pub struct Supervisor;

pub struct SupervisorState {
    kind: &'static str,
    restart: Option<Restarter>,
}

impl Actor for Supervisor {
    type Msg = ();
    type State = SupervisorState;
    type Arguments = (&'static str, Option<Restarter>);

    async fn pre_start(
        &self,
        _myself: ActorRef<()>,
        (kind, restart): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SupervisorState { kind, restart })
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = event {
            let name = cell.get_name().unwrap_or_default();
            tracing::error!(kind = state.kind, actor = %name, error = %err, "actor crashed");
            metrics::counter!("dogear_actor_restarts_total", "kind" => state.kind).increment(1);
            if let Some(restart) = &state.restart
                && !name.is_empty()
            {
                restart(name);
            }
        }
        Ok(())
    }
}

/// Counts live actors of a kind in `dogear_actors_active`; lives in the actor's state, so
/// the count drops however the actor ends (stop, idle, panic).
pub struct ActiveGuard(&'static str);

impl ActiveGuard {
    pub fn new(kind: &'static str) -> ActiveGuard {
        metrics::gauge!("dogear_actors_active", "kind" => kind).increment(1.0);
        ActiveGuard(kind)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        metrics::gauge!("dogear_actors_active", "kind" => self.0).decrement(1.0);
    }
}
