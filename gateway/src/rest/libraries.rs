//! `/v1/libraries/...`: shared libraries, their members, invitations, ownership and audit
//! log. Every rule is the library actor's (`dogear_actors::libraries`); this module turns
//! JSON into those calls and back.

use crate::Ctx;
use crate::error::ApiError;
use crate::http::{self, Req};
use crate::wire;
use dogear_actors::libraries::{MAX_AUDIT_PAGE, Member, NewInvite};
use dogear_actors::messages::Caller;
use dogear_storage::{AuditEntry, DeviceId, Invite, InviteId, LibraryId, Role, Timestamp, UserId};
use serde::Deserialize;
use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::reply::Response;

/// The device a sharing request says it comes from (`X-Dogear-Device`, optional, recorded in
/// the audit log); it must be one of the caller's devices.
const DEVICE_HEADER: &str = "x-dogear-device";

/// Who asks and from where, as the audit log records it.
pub(crate) async fn caller(ctx: &Ctx, user: UserId, req: &Req) -> Result<Caller, ApiError> {
    let device = match req.headers.get(DEVICE_HEADER) {
        None => None,
        Some(v) => {
            let id: DeviceId = v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| ApiError::field("X-Dogear-Device", "must be a device id"))?;
            if !ctx.app.has_device(user, id).await? {
                return Err(ApiError::field(
                    "X-Dogear-Device",
                    "is not one of your devices",
                ));
            }
            Some(id)
        }
    };
    Ok(Caller {
        user,
        device,
        addr: req.remote.map(|a| a.ip().to_string()),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameBody {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: Role,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    role: Role,
    #[serde(default)]
    expires_at: Option<Timestamp>,
    #[serde(default)]
    max_uses: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    code: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OfferBody {
    user_id: Option<UserId>,
}

fn member_json(m: &Member) -> Value {
    json!({"user_id": m.user_id, "username": m.username, "role": m.role})
}

/// An invitation as listed (never with its code: only its hash is kept).
fn invite_json(i: &Invite) -> Value {
    let now = Timestamp::now();
    let state = if i.revoked_at.is_some() {
        "revoked"
    } else if i.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else if i.max_uses.is_some_and(|m| i.uses >= m) {
        "used_up"
    } else {
        "active"
    };
    json!({
        "id": i.id,
        "library_id": i.library_id,
        "role": i.role,
        "created_by": i.created_by,
        "created_at": i.created_at,
        "expires_at": i.expires_at,
        "max_uses": i.max_uses,
        "uses": i.uses,
        "revoked_at": i.revoked_at,
        "state": state,
    })
}

fn audit_json(e: &AuditEntry) -> Value {
    let d = &e.draft;
    json!({
        "seq": e.seq,
        "at": d.at,
        "action": d.action,
        "actor_id": d.actor,
        "device_id": d.device_id,
        "address": d.addr,
        "target_user_id": d.target_user,
        "role": d.role,
        "invite_id": d.invite_id,
        "book_id": d.book_id,
        "name": d.name,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    })
}

pub async fn create(ctx: &Ctx, user: UserId, req: Req) -> Result<Response, ApiError> {
    let b: NameBody = req.json()?;
    let c = caller(ctx, user, &req).await?;
    let (lib, role) = ctx.app.create_library(&c, &b.name).await?;
    Ok(http::json(StatusCode::CREATED, &wire::library(&lib, role)))
}

pub async fn get(ctx: &Ctx, user: UserId, id: LibraryId, req: Req) -> Result<Response, ApiError> {
    let c = caller(ctx, user, &req).await?;
    let (lib, role) = ctx.app.library(&c, id).await?;
    Ok(http::json(StatusCode::OK, &wire::library(&lib, role)))
}

pub async fn rename(
    ctx: &Ctx,
    user: UserId,
    id: LibraryId,
    req: Req,
) -> Result<Response, ApiError> {
    let b: NameBody = req.json()?;
    let c = caller(ctx, user, &req).await?;
    let (lib, role) = ctx.app.rename_library(&c, id, &b.name).await?;
    Ok(http::json(StatusCode::OK, &wire::library(&lib, role)))
}

pub async fn delete(
    ctx: &Ctx,
    user: UserId,
    id: LibraryId,
    req: Req,
) -> Result<Response, ApiError> {
    let c = caller(ctx, user, &req).await?;
    ctx.app.delete_library(&c, id).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

pub async fn members(
    ctx: &Ctx,
    user: UserId,
    id: LibraryId,
    req: Req,
) -> Result<Response, ApiError> {
    let c = caller(ctx, user, &req).await?;
    let items: Vec<Value> = ctx
        .app
        .members(&c, id)
        .await?
        .iter()
        .map(member_json)
        .collect();
    Ok(http::json(
        StatusCode::OK,
        &json!({"items": items, "next_cursor": null}),
    ))
}

pub async fn set_role(
    ctx: &Ctx,
    user: UserId,
    (id, member): (LibraryId, UserId),
    req: Req,
) -> Result<Response, ApiError> {
    let b: RoleBody = req.json()?;
    let c = caller(ctx, user, &req).await?;
    let role = ctx.app.set_member_role(&c, id, member, b.role).await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({"library_id": id, "user_id": member, "role": role}),
    ))
}

pub async fn remove_member(
    ctx: &Ctx,
    user: UserId,
    (id, member): (LibraryId, UserId),
    req: Req,
) -> Result<Response, ApiError> {
    let c = caller(ctx, user, &req).await?;
    ctx.app.remove_member(&c, id, member).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

pub async fn create_invite(
    ctx: &Ctx,
    user: UserId,
    id: LibraryId,
    req: Req,
) -> Result<Response, ApiError> {
    let b: InviteBody = req.json()?;
    let c = caller(ctx, user, &req).await?;
    let new = NewInvite {
        role: b.role,
        expires_at: b.expires_at,
        max_uses: b.max_uses,
    };
    let (invite, code) = ctx.app.create_invite(&c, id, new).await?;
    let base = crate::kobo::public_base(ctx, &req.headers);
    let mut v = invite_json(&invite);
    v["code"] = json!(code);
    v["link"] = json!(format!(
        "{base}/join?code={}",
        crate::http::encode_component(&code)
    ));
    Ok(http::json(StatusCode::CREATED, &v))
}

pub async fn invites(
    ctx: &Ctx,
    user: UserId,
    id: LibraryId,
    req: Req,
) -> Result<Response, ApiError> {
    let c = caller(ctx, user, &req).await?;
    let items: Vec<Value> = ctx
        .app
        .invites(&c, id)
        .await?
        .iter()
        .map(invite_json)
        .collect();
    Ok(http::json(
        StatusCode::OK,
        &json!({"items": items, "next_cursor": null}),
    ))
}

pub async fn revoke_invite(
    ctx: &Ctx,
    user: UserId,
    (id, invite): (LibraryId, InviteId),
    req: Req,
) -> Result<Response, ApiError> {
    let c = caller(ctx, user, &req).await?;
    ctx.app.revoke_invite(&c, id, invite).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

pub async fn join(ctx: &Ctx, user: UserId, req: Req) -> Result<Response, ApiError> {
    let b: JoinBody = req.json()?;
    let c = caller(ctx, user, &req).await?;
    let (lib, role) = ctx.app.join(&c, &b.code).await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({"library": wire::library(&lib, role)}),
    ))
}

pub async fn offer(ctx: &Ctx, user: UserId, id: LibraryId, req: Req) -> Result<Response, ApiError> {
    let b: OfferBody = req.json()?;
    let c = caller(ctx, user, &req).await?;
    let (lib, role) = ctx.app.offer_library(&c, id, b.user_id).await?;
    Ok(http::json(StatusCode::OK, &wire::library(&lib, role)))
}

pub async fn accept(
    ctx: &Ctx,
    user: UserId,
    id: LibraryId,
    req: Req,
) -> Result<Response, ApiError> {
    let c = caller(ctx, user, &req).await?;
    let (lib, role) = ctx.app.accept_library(&c, id).await?;
    Ok(http::json(StatusCode::OK, &wire::library(&lib, role)))
}

pub async fn audit(ctx: &Ctx, user: UserId, id: LibraryId, req: Req) -> Result<Response, ApiError> {
    let limit = req.limit()?.min(MAX_AUDIT_PAGE);
    let after = match req.q("cursor") {
        None | Some("") => 0,
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| ApiError::field("cursor", "must be a cursor from a previous page"))?,
    };
    let c = caller(ctx, user, &req).await?;
    let entries = ctx.app.audit(&c, id, after, limit).await?;
    let next = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.seq.to_string()))
        .flatten();
    let items: Vec<Value> = entries.iter().map(audit_json).collect();
    Ok(http::json(
        StatusCode::OK,
        &json!({"items": items, "next_cursor": next}),
    ))
}

/// A members' feed cursor: the last book change and the last audit entry read (`b12.a4`).
fn parse_feed_cursor(s: &str) -> Option<(u64, u64)> {
    let (b, a) = s.split_once('.')?;
    Some((
        b.strip_prefix('b')?.parse().ok()?,
        a.strip_prefix('a')?.parse().ok()?,
    ))
}

/// A membership event of the audit log as the changes feed shows it to members.
fn event_json(e: &AuditEntry) -> Value {
    use dogear_storage::AuditAction as A;
    let d = &e.draft;
    let (kind, user) = match d.action {
        A::LibraryCreated => ("library_created", Some(d.actor)),
        A::LibraryRenamed => ("library_changed", None),
        A::OwnershipOffered => ("library_changed", d.target_user),
        A::InviteRedeemed => ("member_joined", d.target_user),
        A::RoleChanged => ("role_changed", d.target_user),
        A::MemberRemoved => ("member_removed", d.target_user),
        A::MemberLeft => ("member_left", d.target_user),
        A::OwnershipTransferred => ("owner_changed", Some(d.actor)),
        _ => ("library_changed", None),
    };
    json!({
        "type": kind,
        "seq": e.seq,
        "at": d.at,
        "user_id": user,
        "role": d.role,
        "name": d.name,
    })
}

pub async fn changes(
    ctx: &Ctx,
    user: UserId,
    id: LibraryId,
    req: Req,
) -> Result<Response, ApiError> {
    let limit = req.limit()?;
    let after = match req.q("cursor") {
        None | Some("") => (0, 0),
        Some(s) => parse_feed_cursor(s)
            .ok_or_else(|| ApiError::field("cursor", "must be a cursor from a previous page"))?,
    };
    let c = caller(ctx, user, &req).await?;
    let page = ctx.app.library_changes(&c, id, after, limit).await?;
    let mut items: Vec<Value> = page
        .books
        .iter()
        .map(|(n, b)| match b.deleted_at {
            Some(_) => json!({"type": "book_removed", "change": n, "book_id": b.id}),
            None => json!({"type": "book", "change": n, "book": wire::book(b)}),
        })
        .collect();
    items.extend(page.events.iter().map(event_json));
    let cursor = format!("b{}.a{}", page.next.0, page.next.1);
    Ok(http::json(
        StatusCode::OK,
        &json!({"items": items, "next_cursor": cursor, "more": page.more}),
    ))
}
