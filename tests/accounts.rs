//! Accounts over real HTTP: registration, login, token rotation, reuse detection, limits.

use dogear_e2e::{Server, serde_json::json};

#[tokio::test]
async fn register_login_me_and_validation() {
    let server = Server::start();
    let api = server.client();
    let r = api
        .post(
            "/v1/auth/register",
            json!({"username": "ada.l-1_", "password": "12345678", "email": "ada@example.org"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    for field in ["access_token", "refresh_token"] {
        assert!(
            r.body[field].as_str().is_some_and(|s| s.len() > 20),
            "{field}"
        );
    }
    assert_eq!(r.body["expires_in"], 900, "15 minutes by default");
    assert_eq!(r.body["user"]["username"], "ada.l-1_");
    let id = r.body["user"]["id"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok());

    let me = api
        .with_token(r.body["access_token"].as_str().unwrap())
        .get("/v1/users/me")
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["id"], id);
    assert_eq!(me.body["email"], "ada@example.org");
    let created = me.body["created_at"].as_str().unwrap();
    assert!(
        created.ends_with('Z') && created.len() == 24,
        "RFC 3339 with ms: {created}"
    );

    // The personal library exists from registration on.
    let libs = api
        .with_token(r.body["access_token"].as_str().unwrap())
        .get("/v1/libraries")
        .await;
    assert_eq!(libs.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(libs.body["items"][0]["kind"], "personal");
    assert_eq!(libs.body["items"][0]["role"], "owner");

    let dup = api
        .post(
            "/v1/auth/register",
            json!({"username": "ada.l-1_", "password": "12345678"}),
        )
        .await;
    dup.assert_error(409, "username_taken");

    let cases = [
        (
            json!({"username": "Ada", "password": "12345678"}),
            "username",
        ),
        (
            json!({"username": "ab", "password": "12345678"}),
            "username",
        ),
        (
            json!({"username": "a".repeat(33), "password": "12345678"}),
            "username",
        ),
        (json!({"username": "bob", "password": "short"}), "password"),
        (
            json!({"username": "bob", "password": "x".repeat(1025)}),
            "password",
        ),
        (json!({"username": "bob"}), "password"),
        (json!({"username": 5, "password": "12345678"}), "username"),
        (
            json!({"username": "bob", "password": "12345678", "email": "nope"}),
            "email",
        ),
    ];
    for (body, field) in cases {
        let r = api.post("/v1/auth/register", body.clone()).await;
        let msg = r.assert_error(400, "bad_request");
        assert!(msg.contains(field), "{body} -> {msg}");
    }
    let r = api
        .send("POST", "/v1/auth/register", Some("{not json"))
        .await;
    r.assert_error(400, "bad_request");
    let r = api.send("POST", "/v1/auth/register", None).await;
    assert!(r.assert_error(400, "bad_request").contains("body"));

    let ok = api
        .post(
            "/v1/auth/login",
            json!({"username": "ada.l-1_", "password": "12345678"}),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["user"]["id"], id);
    let wrong_pw = api
        .post(
            "/v1/auth/login",
            json!({"username": "ada.l-1_", "password": "123456789"}),
        )
        .await;
    let unknown = api
        .post(
            "/v1/auth/login",
            json!({"username": "nobody", "password": "123456789"}),
        )
        .await;
    let m1 = wrong_pw
        .assert_error(401, "invalid_credentials")
        .to_string();
    let m2 = unknown.assert_error(401, "invalid_credentials");
    assert_eq!(
        m1, m2,
        "same message for a wrong password and an unknown user"
    );
}

#[tokio::test]
async fn tokens_are_checked() {
    let server = Server::start_with(&[("DOGEAR_AUTH__ACCESS_TTL_SECS", "1")]);
    let api = server.client();
    let r = api
        .post(
            "/v1/auth/register",
            json!({"username": "tok", "password": "12345678"}),
        )
        .await;
    assert_eq!(r.body["expires_in"], 1);
    let token = r.body["access_token"].as_str().unwrap().to_string();
    api.get("/v1/users/me")
        .await
        .assert_error(401, "unauthorized");
    api.with_token("garbage")
        .get("/v1/users/me")
        .await
        .assert_error(401, "unauthorized");
    // A token signed with another key is refused.
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    api.with_token(&forged)
        .get("/v1/users/me")
        .await
        .assert_error(401, "unauthorized");
    assert_eq!(api.with_token(&token).get("/v1/users/me").await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    api.with_token(&token)
        .get("/v1/users/me")
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    // Without the grace for concurrent refreshes (tested below), reuse is caught at once.
    let server = Server::start_with(&[("DOGEAR_AUTH__REFRESH_GRACE_SECS", "0")]);
    let api = server.client();
    let r = api
        .post(
            "/v1/auth/register",
            json!({"username": "rot", "password": "12345678"}),
        )
        .await;
    let first = r.body["refresh_token"].as_str().unwrap().to_string();
    let r2 = api
        .post("/v1/auth/refresh", json!({"refresh_token": first}))
        .await;
    assert_eq!(r2.status, 200, "{}", r2.body);
    let second = r2.body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    assert_eq!(
        api.with_token(r2.body["access_token"].as_str().unwrap())
            .get("/v1/users/me")
            .await
            .status,
        200
    );
    // The old one again: refused, and the whole family with it.
    api.post("/v1/auth/refresh", json!({"refresh_token": first}))
        .await
        .assert_error(401, "unauthorized");
    api.post("/v1/auth/refresh", json!({"refresh_token": second}))
        .await
        .assert_error(401, "unauthorized");
    api.post("/v1/auth/refresh", json!({"refresh_token": "made-up"}))
        .await
        .assert_error(401, "unauthorized");
    api.post("/v1/auth/refresh", json!({}))
        .await
        .assert_error(400, "bad_request");

    // Logout ends a session; other sessions live on.
    let a = api
        .post(
            "/v1/auth/login",
            json!({"username": "rot", "password": "12345678"}),
        )
        .await;
    let b = api
        .post(
            "/v1/auth/login",
            json!({"username": "rot", "password": "12345678"}),
        )
        .await;
    let (ra, rb) = (
        a.body["refresh_token"].as_str().unwrap(),
        b.body["refresh_token"].as_str().unwrap(),
    );
    assert_eq!(
        api.post("/v1/auth/logout", json!({"refresh_token": ra}))
            .await
            .status,
        204
    );
    api.post("/v1/auth/refresh", json!({"refresh_token": ra}))
        .await
        .assert_error(401, "unauthorized");
    assert_eq!(
        api.post("/v1/auth/refresh", json!({"refresh_token": rb}))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn failed_logins_are_rate_limited() {
    let server = Server::start_with(&[("DOGEAR_AUTH__LOGIN_MAX_FAILURES", "3")]);
    let api = server.client();
    api.post(
        "/v1/auth/register",
        json!({"username": "lim", "password": "12345678"}),
    )
    .await;
    for _ in 0..3 {
        api.post(
            "/v1/auth/login",
            json!({"username": "lim", "password": "wrong-one"}),
        )
        .await
        .assert_error(401, "invalid_credentials");
    }
    let r = api
        .post(
            "/v1/auth/login",
            json!({"username": "lim", "password": "12345678"}),
        )
        .await;
    r.assert_error(429, "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "Retry-After {retry}");
    // Another name is not affected by this one's failures.
    api.post(
        "/v1/auth/register",
        json!({"username": "other", "password": "12345678"}),
    )
    .await;
    assert_eq!(
        api.post(
            "/v1/auth/login",
            json!({"username": "other", "password": "12345678"})
        )
        .await
        .status,
        200
    );
    // One address guessing across many names gets four times one name's budget.
    for i in 0..9 {
        let r = api
            .post(
                "/v1/auth/login",
                json!({"username": format!("guess{i}"), "password": "nope-nope"}),
            )
            .await;
        r.assert_error(401, "invalid_credentials");
    }
    let r = api
        .post(
            "/v1/auth/login",
            json!({"username": "other", "password": "12345678"}),
        )
        .await;
    r.assert_error(429, "rate_limited");
}

#[tokio::test]
async fn closed_registration() {
    let server = Server::start_with(&[("DOGEAR_AUTH__REGISTRATION", "closed")]);
    let r = server
        .client()
        .post(
            "/v1/auth/register",
            json!({"username": "late", "password": "12345678"}),
        )
        .await;
    r.assert_error(403, "registration_closed");
}

/// A client of `server` whose connections come from the loopback address `ip`.
fn client_from(server: &Server, ip: [u8; 4]) -> dogear_e2e::Api {
    dogear_e2e::Api {
        http: reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap(),
        base: server.base.clone(),
        token: None,
    }
}

/// Failing logins for someone else's name from other addresses never locks its owner out:
/// the limit is per name and address; from many addresses the name is slowed, not locked.
#[tokio::test]
async fn nobody_can_lock_a_reader_out_from_elsewhere() {
    let server = Server::start_with(&[("DOGEAR_AUTH__LOGIN_MAX_FAILURES", "3")]);
    let owner = client_from(&server, [127, 0, 0, 1]);
    owner
        .post(
            "/v1/auth/register",
            json!({"username": "victim", "password": "the right one"}),
        )
        .await;
    // An attacker at 127.0.0.2 spends its budget for the name, then is refused...
    let attacker = client_from(&server, [127, 0, 0, 2]);
    for _ in 0..3 {
        attacker
            .post(
                "/v1/auth/login",
                json!({"username": "victim", "password": "guess guess"}),
            )
            .await
            .assert_error(401, "invalid_credentials");
    }
    attacker
        .post(
            "/v1/auth/login",
            json!({"username": "victim", "password": "the right one"}),
        )
        .await
        .assert_error(429, "rate_limited");
    // ...another at 127.0.0.3 has a budget of its own...
    let second = client_from(&server, [127, 0, 0, 3]);
    second
        .post(
            "/v1/auth/login",
            json!({"username": "victim", "password": "guess again"}),
        )
        .await
        .assert_error(401, "invalid_credentials");
    // ...and the owner, at home, still gets in.
    let r = owner
        .post(
            "/v1/auth/login",
            json!({"username": "victim", "password": "the right one"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Failures from many addresses beyond four budgets slow the name down for everyone, but
    // the right password still works.
    for last in 10..18u8 {
        let c = client_from(&server, [127, 0, 0, last]);
        c.post(
            "/v1/auth/login",
            json!({"username": "victim", "password": "spray spray"}),
        )
        .await
        .assert_error(401, "invalid_credentials");
    }
    let started = std::time::Instant::now();
    let r = owner
        .post(
            "/v1/auth/login",
            json!({"username": "victim", "password": "the right one"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "a name under attack is slowed down"
    );
}

/// Two tabs refreshing with the same token at once both stay signed in with the same new
/// pair; presenting the spent token after the grace period still revokes the session.
#[tokio::test]
async fn two_tabs_refreshing_at_once_stay_signed_in() {
    let server = Server::start_with(&[("DOGEAR_AUTH__REFRESH_GRACE_SECS", "2")]);
    let api = server.client();
    let r = api
        .post(
            "/v1/auth/register",
            json!({"username": "tabs", "password": "12345678"}),
        )
        .await;
    let token = r.body["refresh_token"].as_str().unwrap().to_string();
    let body = json!({ "refresh_token": token });
    let (a, b) = tokio::join!(
        api.post("/v1/auth/refresh", body.clone()),
        api.post("/v1/auth/refresh", body.clone())
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(
        a.body["refresh_token"], b.body["refresh_token"],
        "the same new pair"
    );
    assert_eq!(a.body["access_token"], b.body["access_token"]);
    assert_ne!(a.body["refresh_token"], token.as_str());
    // A third presentation within the grace gets the same pair again.
    let c = api.post("/v1/auth/refresh", body.clone()).await;
    assert_eq!(c.body["refresh_token"], a.body["refresh_token"]);
    let me = api.with_token(a.body["access_token"].as_str().unwrap());
    assert_eq!(me.get("/v1/users/me").await.status, 200);

    // After the grace, the spent token is a stolen one: the whole session is revoked.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    api.post("/v1/auth/refresh", body)
        .await
        .assert_error(401, "unauthorized");
    api.post(
        "/v1/auth/refresh",
        json!({ "refresh_token": a.body["refresh_token"] }),
    )
    .await
    .assert_error(401, "unauthorized");
}
