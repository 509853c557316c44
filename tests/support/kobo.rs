//! A Kobo as the tests play it: the store calls a device makes, with its headers.

use crate::Resp;
use serde_json::Value;

/// A Kobo: its base URL is the `api_endpoint` line, and it remembers its sync token.
pub struct Kobo {
    pub http: reqwest::Client,
    pub endpoint: String,
    pub sync_token: Option<String>,
}

impl Kobo {
    pub fn new(endpoint: &str) -> Kobo {
        Kobo {
            http: crate::http_client(),
            endpoint: endpoint.to_string(),
            sync_token: None,
        }
    }

    pub async fn call(&self, method: &str, url: &str, body: Option<Value>) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self
            .http
            .request(method, url)
            .header("authorization", "Bearer device-access-token")
            .header("x-kobo-deviceid", "0123456789abcdef")
            .header("user-agent", "Mozilla/5.0 (Kobo Touch 0390/4.46.23836)");
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        Resp::of(rb.send().await.expect("kobo request")).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call("GET", &format!("{}{path}", self.endpoint), None)
            .await
    }

    /// One sync request with the token it holds; keeps the new token.
    pub async fn sync_page(&mut self) -> (Vec<Value>, bool) {
        let mut rb = self
            .http
            .get(format!(
                "{}/v1/library/sync?Filter=ALL&DownloadUrlFilter=Generic,Android&PrioritizeRecentReads=true",
                self.endpoint
            ));
        if let Some(t) = &self.sync_token {
            rb = rb.header("x-kobo-synctoken", t);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        let token = r.headers()["x-kobo-synctoken"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            token.len() < 1024 && !token.contains('.'),
            "sync token {token}"
        );
        let more = r
            .headers()
            .get("x-kobo-sync")
            .is_some_and(|v| v == "continue");
        let header_bytes: usize = r
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        assert!(header_bytes < 4096, "response headers {header_bytes} bytes");
        self.sync_token = Some(token);
        let body: Value = r.json().await.unwrap();
        (
            body.as_array().expect("sync body is an array").clone(),
            more,
        )
    }

    /// Pages until the server stops saying `continue`.
    pub async fn sync_all(&mut self) -> Vec<Vec<Value>> {
        let mut pages = Vec::new();
        for _ in 0..500 {
            let (items, more) = self.sync_page().await;
            pages.push(items);
            if !more {
                return pages;
            }
        }
        panic!("sync never ended");
    }
}
