//! `dogear user list|disable|enable|reset-password|delete`: the administrators' account
//! commands, for a machine without a signed-in administrator. `list`, `disable`, `enable`
//! and `reset-password` change one row and work beside running nodes (which refuse the
//! account's tokens within 2 s, when they next look at the store); `delete` runs the whole
//! deletion of `DELETE /v1/admin/users/{id}` and, on the embedded store, needs the data
//! directory to itself (on a running node, use that route instead).

use crate::config::Config;
use dogear_storage::{Store, Timestamp, User, UserId};
use std::sync::Arc;

/// The account a command names, by user name or id.
async fn find(store: &Arc<dyn Store>, who: &str) -> Result<User, String> {
    let by_name = store
        .user_by_name(who)
        .await
        .map_err(|e| format!("reading accounts: {e}"))?;
    let found = match by_name {
        Some(u) => Some(u),
        None => match who.parse::<UserId>() {
            Ok(id) => store
                .user(id)
                .await
                .map_err(|e| format!("reading accounts: {e}"))?,
            Err(_) => None,
        },
    };
    found.ok_or_else(|| format!("no account named {who:?}"))
}

pub async fn list(cfg: Config) -> Result<(), String> {
    let (store, _) = crate::serve::open_store(&cfg).await?;
    let users = store.users().await.map_err(|e| e.to_string());
    let _ = store.close().await;
    let users = users?;
    println!(
        "{:<36}  {:<32}  {:<5}  {:<8}  CREATED",
        "ID", "USERNAME", "ADMIN", "STATE"
    );
    for u in &users {
        println!(
            "{:<36}  {:<32}  {:<5}  {:<8}  {}",
            u.id,
            u.username,
            if u.is_admin { "yes" } else { "no" },
            if u.disabled_at.is_some() {
                "disabled"
            } else {
                "active"
            },
            u.created_at
        );
    }
    println!("{} account(s)", users.len());
    Ok(())
}

pub async fn set_disabled(cfg: Config, who: &str, disabled: bool) -> Result<(), String> {
    let (store, _) = crate::serve::open_store(&cfg).await?;
    let r = async {
        let mut u = find(&store, who).await?;
        if u.disabled_at.is_some() == disabled {
            println!(
                "{} is already {}",
                u.username,
                if disabled { "disabled" } else { "enabled" }
            );
            return Ok(());
        }
        u.disabled_at = disabled.then(Timestamp::now);
        u.token_epoch = u.token_epoch.saturating_add(1);
        store.update_user(&u).await.map_err(|e| e.to_string())?;
        if disabled {
            store
                .revoke_user_sessions(u.id)
                .await
                .map_err(|e| e.to_string())?;
        }
        println!(
            "{} {} ({})",
            if disabled { "disabled" } else { "enabled" },
            u.username,
            u.id
        );
        Ok(())
    }
    .await;
    let _ = store.close().await;
    r
}

pub async fn reset_password(cfg: Config, who: &str, password: &str) -> Result<(), String> {
    dogear_actors::auth::validate_password(password).map_err(|e| e.to_string())?;
    let (store, _) = crate::serve::open_store(&cfg).await?;
    let r = async {
        let mut u = find(&store, who).await?;
        u.password_hash = dogear_actors::auth::hash_secret(password.to_string())
            .await
            .map_err(|e| e.to_string())?;
        u.token_epoch = u.token_epoch.saturating_add(1);
        store.update_user(&u).await.map_err(|e| e.to_string())?;
        store
            .revoke_user_sessions(u.id)
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "new password set for {} ({}); its sessions ended",
            u.username, u.id
        );
        Ok(())
    }
    .await;
    let _ = store.close().await;
    r
}

pub async fn delete(cfg: Config, who: &str) -> Result<(), String> {
    let (app, _, _) = crate::serve::start_app(&cfg, false).await.map_err(|e| {
        format!("{e} (on a running node, use DELETE /v1/admin/users/{{id}} instead)")
    })?;
    let r = async {
        let u = find(app.importer().store(), who).await?;
        app.admin_delete(None, u.id)
            .await
            .map_err(|e| format!("deleting {}: {e}", u.username))?;
        println!(
            "deleted {} ({}) and everything that was theirs alone",
            u.username, u.id
        );
        Ok(())
    }
    .await;
    app.shutdown().await;
    r
}
