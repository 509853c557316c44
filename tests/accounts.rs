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

/// The cookies a response sets, as (name=value, attributes) per `Set-Cookie`.
fn set_cookies(r: &dogear_e2e::Resp) -> Vec<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_browser_keeps_its_refresh_token_in_an_http_only_cookie() {
    let server = Server::start();
    let anon = server.client();
    let page = anon.with_header("x-dogear-session", "cookie");
    let r = page
        .post(
            "/v1/auth/register",
            json!({"username": "cookie_reader", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // The token is in the cookie, not where a page's script could read it.
    assert!(r.body["refresh_token"].is_null(), "{}", r.body);
    assert!(r.body["access_token"].is_string());
    let cookies = set_cookies(&r);
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    let mut paths = Vec::new();
    for c in &cookies {
        assert!(c.starts_with("dogear_refresh="), "{c}");
        for attr in ["HttpOnly", "SameSite=Strict", "Max-Age="] {
            assert!(c.contains(attr), "{attr} in {c}");
        }
        assert!(!c.contains("Secure"), "plain HTTP here: {c}");
        paths.push(
            c.split("Path=")
                .nth(1)
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_string(),
        );
    }
    paths.sort();
    assert_eq!(paths, ["/v1/auth/logout", "/v1/auth/refresh"]);
    let token = cookies[0]
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("dogear_refresh=")
        .to_string();
    let cookie = format!("dogear_refresh={token}");

    // A reload: the page refreshes with the cookie and its session header.
    let with_cookie = |extra: Option<(&'static str, &str)>| {
        let mut rb = page
            .http
            .post(format!("{}/v1/auth/refresh", server.base))
            .header("cookie", cookie.clone())
            .header("x-dogear-session", "cookie");
        if let Some((k, v)) = extra {
            rb = rb.header(k, v);
        }
        rb
    };
    let r = dogear_e2e::Resp::of(with_cookie(None).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["refresh_token"].is_null());
    let next = set_cookies(&r);
    assert_eq!(next.len(), 2);
    assert!(!next[0].contains(&token), "rotated");
    // From another site's page (its Origin), or without the header a cross-site form cannot
    // send: refused.
    let r = dogear_e2e::Resp::of(
        with_cookie(Some(("origin", "https://evil.example")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.assert_error(403, "forbidden");
    let r = dogear_e2e::Resp::of(
        anon.http
            .post(format!("{}/v1/auth/refresh", server.base))
            .header("cookie", next[0].split(';').next().unwrap())
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.assert_error(403, "forbidden");
    anon.post("/v1/auth/refresh", json!({}))
        .await
        .assert_error(400, "bad_request");
    // The same page's origin is accepted; logout clears the cookies and ends the session.
    let current = next[0].split(';').next().unwrap().to_string();
    let r = dogear_e2e::Resp::of(
        page.http
            .post(format!("{}/v1/auth/logout", server.base))
            .header("cookie", current.clone())
            .header("x-dogear-session", "cookie")
            .header("origin", server.base.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let cleared = set_cookies(&r);
    assert!(
        cleared.iter().all(|c| c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    let r = dogear_e2e::Resp::of(
        page.http
            .post(format!("{}/v1/auth/refresh", server.base))
            .header("cookie", current)
            .header("x-dogear-session", "cookie")
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.assert_error(401, "unauthorized");
    // Apps keep sending the token in the body, and get it back there.
    let r = anon
        .post(
            "/v1/auth/login",
            json!({"username": "cookie_reader", "password": "correct horse battery"}),
        )
        .await;
    assert!(r.body["refresh_token"].is_string());
    assert!(set_cookies(&r).is_empty());
    // Behind an HTTPS proxy the cookie is Secure.
    let r = dogear_e2e::Resp::of(
        page.http
            .post(format!("{}/v1/auth/login", server.base))
            .header("x-forwarded-proto", "https")
            .header("content-type", "application/json")
            .body(
                json!({"username": "cookie_reader", "password": "correct horse battery"})
                    .to_string(),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let secure = set_cookies(&r);
    assert!(
        secure.len() == 2 && secure.iter().all(|c| c.contains("; Secure")),
        "{secure:?}"
    );
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let server = Server::start();
    let anon = server.client();
    for (path, status) in [
        ("/health", 200),
        ("/v1/users/me", 401),
        ("/no/such/route", 404),
    ] {
        let r = anon.get(path).await;
        assert_eq!(r.status, status, "{path}");
        for (h, v) in [
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            ("content-security-policy", "frame-ancestors 'none'"),
            ("x-frame-options", "DENY"),
        ] {
            assert_eq!(
                r.headers.get(h).map(|x| x.to_str().unwrap()),
                Some(v),
                "{h} on {path}"
            );
        }
    }
}
