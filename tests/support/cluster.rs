//! Several `dogear` processes on loopback forming one cluster: a fresh PostgreSQL database,
//! a fresh prefix in the test S3 bucket, the test Redis, one JWT secret and cookie, an
//! administrator made with `dogear user add` before the nodes start.

use crate::{Api, Server, fresh_postgres, serde_json::json};
use std::time::Duration;

pub struct Nodes {
    pub nodes: Vec<Server>,
    pub ids: Vec<String>,
    /// The administrator's client (`root`), pointed at node 0.
    pub admin: Api,
}

/// A port for a process to listen on later. Chosen below Linux's ephemeral range (32768 and
/// up), where every server started with `127.0.0.1:0` gets its port, so another test's node
/// cannot take it between this check and the listener's start; and claimed with a marker
/// file, so two tests running at once never pick the same one.
pub fn free_port() -> u16 {
    let dir = std::env::temp_dir().join("dogear-test-ports");
    let _ = std::fs::create_dir_all(&dir);
    for _ in 0..10_000 {
        let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % 12_000) as u16;
        let marker = dir.join(port.to_string());
        // A claim older than any test run is left over from an earlier run: free again.
        let stale = std::fs::metadata(&marker)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600));
        if stale {
            let _ = std::fs::remove_file(&marker);
        }
        let claimed = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker);
        if let Ok(mut f) = claimed {
            let _ = std::io::Write::write_all(&mut f, std::process::id().to_string().as_bytes());
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    panic!("no free port between 20000 and 32000")
}

/// The environment every node of one cluster shares, and each node's own part.
pub struct Plan {
    pub shared: Vec<(String, String)>,
    pub listen: Vec<String>,
    pub ids: Vec<String>,
}

impl Plan {
    pub async fn new(n: usize) -> Plan {
        let s3 = std::env::var("DOGEAR_TEST_S3").expect(
            "DOGEAR_TEST_S3 is not set: run the suite with scripts/test.sh, which starts an S3 server",
        );
        let redis = std::env::var("DOGEAR_TEST_REDIS").expect(
            "DOGEAR_TEST_REDIS is not set: run the suite with scripts/test.sh, which starts Redis",
        );
        let url = fresh_postgres().await;
        let prefix = format!("s3://dogear-test/cluster-{}", uuid::Uuid::new_v4().simple());
        let shared = [
            ("DOGEAR_STORAGE__BACKEND", "postgres"),
            ("DOGEAR_STORAGE__POSTGRES_URL", url.as_str()),
            ("DOGEAR_STORAGE__OBJECTS", prefix.as_str()),
            ("AWS_ENDPOINT_URL", s3.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            (
                "DOGEAR_AUTH__JWT_SECRET",
                "cluster-test-secret-0123456789abcdef",
            ),
            ("DOGEAR_CLUSTER__COOKIE", "cluster-test"),
            ("DOGEAR_CLUSTER__HEARTBEAT_MS", "200"),
            ("DOGEAR_CLUSTER__FAILURE_TIMEOUT_MS", "1500"),
            ("DOGEAR_AUTH__LOGIN_WINDOW_SECS", "60"),
            ("DOGEAR_REDIS__URL", redis.as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let listen = (0..n)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let ids = (0..n).map(|i| format!("n{i}")).collect();
        Plan {
            shared,
            listen,
            ids,
        }
    }

    /// Node `i`'s environment: the shared part, its id and port, every other node as a seed.
    pub fn env(&self, i: usize, seeds: Option<Vec<String>>) -> Vec<(String, String)> {
        let seeds = seeds.unwrap_or_else(|| {
            self.listen
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, a)| a.clone())
                .collect()
        });
        let mut env = self.shared.clone();
        env.push(("DOGEAR_CLUSTER__NODE_ID".into(), self.ids[i].clone()));
        env.push(("DOGEAR_CLUSTER__LISTEN".into(), self.listen[i].clone()));
        env.push(("DOGEAR_CLUSTER__SEEDS".into(), seeds.join(",")));
        env
    }

    pub fn add_admin(&self) {
        let env: Vec<(&str, &str)> = self
            .shared
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        crate::add_admin(&env);
    }
}

pub fn start_node(env: &[(String, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start_with(&env)
}

impl Nodes {
    /// `n` nodes, each seeded with every other, waited for until every node sees all up.
    pub async fn start(n: usize) -> (Nodes, Plan) {
        let plan = Plan::new(n).await;
        let envs = (0..n).map(|i| plan.env(i, None)).collect();
        let nodes = Nodes::start_with(&plan, envs).await;
        (nodes, plan)
    }

    /// One node per environment (from `plan.env`, possibly changed), waited for until every
    /// node sees all up.
    pub async fn start_with(plan: &Plan, envs: Vec<Vec<(String, String)>>) -> Nodes {
        plan.add_admin();
        let n = envs.len();
        let nodes: Vec<Server> = envs.iter().map(|e| start_node(e)).collect();
        let login = nodes[0]
            .client()
            .post(
                "/v1/auth/login",
                json!({"username": "root", "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(login.status, 200, "{}", login.body);
        let admin = nodes[0]
            .client()
            .with_token(login.body["access_token"].as_str().unwrap_or_default());
        let c = Nodes {
            nodes,
            ids: plan.ids.clone(),
            admin,
        };
        c.wait_members(&(0..n).collect::<Vec<_>>(), n, 20).await;
        c
    }

    /// Active user actors per node (`dogear_actors_active{kind="user"}`).
    pub async fn user_actors(&self) -> Vec<f64> {
        let mut out = Vec::new();
        for n in &self.nodes {
            let m = n.metrics().await;
            out.push(crate::metric(&m, "dogear_actors_active{kind=\"user\"}"));
        }
        out
    }

    /// The administrator's client pointed at node `i`.
    pub fn admin_on(&self, i: usize) -> Api {
        Api {
            base: self.nodes[i].base.clone(),
            ..self.admin.clone()
        }
    }

    /// Waits until each node in `on` sees exactly `up` members up (itself included).
    pub async fn wait_members(&self, on: &[usize], up: usize, secs: u64) {
        for &i in on {
            let api = self.admin_on(i);
            crate::eventually(secs, &format!("node {i} sees {up} members up"), || {
                let api = api.clone();
                async move {
                    let r = api.get("/v1/cluster").await;
                    let n = r.body["members"]
                        .as_array()
                        .map(|m| m.iter().filter(|m| m["state"] == "up").count())
                        .unwrap_or(0);
                    (n == up).then_some(())
                }
            })
            .await;
        }
    }

    /// The nodes whose user actors are running (after one reader's first request there is
    /// exactly one: the owner of that reader).
    pub async fn user_actor_nodes(&self) -> Vec<usize> {
        self.user_actors()
            .await
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0.0)
            .map(|(i, _)| i)
            .collect()
    }
}

/// Short pause for membership to notice something (a few heartbeats).
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(600)).await;
}
