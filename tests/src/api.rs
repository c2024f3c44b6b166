//! Typed HTTP helpers for the command and query APIs.

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

/// A passphrase that passes the strength policy.
pub const PASSWORD: &str = "orbit velvet canyon pickle 42";

pub fn unique_email(label: &str) -> String {
    format!(
        "{label}.{}@example.org",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub command: String,
    pub query: String,
}

/// A logged-in account.
#[derive(Debug, Clone)]
pub struct Login {
    pub token: String,
    pub account_id: String,
    pub session_id: String,
}

impl Api {
    pub fn new(command: &str, query: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            command: command.to_owned(),
            query: query.to_owned(),
        }
    }

    pub async fn register(&self, role: &str, email: &str, name: &str) -> Response {
        self.http
            .post(format!("{}/accounts", self.command))
            .json(&json!({ "role": role, "email": email, "password": PASSWORD, "name": name }))
            .send()
            .await
            .expect("command API reachable")
    }

    /// Registers an account and asserts it succeeded; returns (account id, sequence).
    pub async fn register_ok(&self, role: &str, email: &str, name: &str) -> (String, u64) {
        let response = self.register(role, email, name).await;
        let status = response.status();
        let body: Value = response.json().await.expect("JSON body");
        assert_eq!(status, StatusCode::CREATED, "registration failed: {body}");
        (
            body["aggregate_id"].as_str().unwrap().to_owned(),
            body["sequence"].as_u64().unwrap(),
        )
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.http
            .post(format!("{}/sessions", self.command))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("command API reachable")
    }

    pub async fn login_ok(&self, email: &str) -> Login {
        let response = self.login(email, PASSWORD).await;
        let status = response.status();
        let body: Value = response.json().await.expect("JSON body");
        assert_eq!(status, StatusCode::CREATED, "login failed: {body}");
        Login {
            token: body["token"].as_str().unwrap().to_owned(),
            account_id: body["account_id"].as_str().unwrap().to_owned(),
            session_id: body["session_id"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn me(&self, token: &str, wait_for_sequence: Option<u64>) -> Response {
        let mut url = format!("{}/me", self.query);
        if let Some(sequence) = wait_for_sequence {
            url.push_str(&format!("?wait_for_sequence={sequence}&wait_ms=15000"));
        }
        self.http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("query API reachable")
    }

    pub async fn command_post(&self, token: &str, path: &str, body: Value) -> Response {
        self.http
            .post(format!("{}{path}", self.command))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("command API reachable")
    }

    pub async fn command_delete(&self, token: &str, path: &str) -> Response {
        self.http
            .delete(format!("{}{path}", self.command))
            .bearer_auth(token)
            .send()
            .await
            .expect("command API reachable")
    }

    pub async fn query_get(&self, token: &str, path_and_query: &str) -> Response {
        self.http
            .get(format!("{}{path_and_query}", self.query))
            .bearer_auth(token)
            .send()
            .await
            .expect("query API reachable")
    }
}

/// Reads a problem response, asserting its status and content type.
pub async fn expect_problem(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let has_request_id = response.headers().contains_key("x-request-id");
    let body: Value = response.json().await.expect("problem body is JSON");
    assert_eq!(actual, status, "unexpected status; body {body}");
    assert_eq!(content_type, "application/problem+json", "body {body}");
    assert!(
        has_request_id,
        "problem response without x-request-id header"
    );
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:medflow:problem:")),
        "{body}"
    );
    assert!(
        body["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{body}"
    );
    body
}
