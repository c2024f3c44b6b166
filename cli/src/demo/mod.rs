//! `medflow demo`: drives a realistic scenario through the command and query APIs of a
//! running platform and prints each step. Every run uses fresh e-mail addresses, so it
//! can be repeated against the same database.

mod appointments;
mod audit;
mod doctors;
mod platform;

use std::time::Duration;

use anyhow::{bail, Context};
use medflow_cli::http;
use medflow_cli::platform::PlatformArgs;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct DemoSettings {
    #[command(flatten)]
    pub platform: PlatformArgs,
    /// Web port of the mail catcher (maildev 3, REST API under `/api`), where the demo looks for the
    /// patient's reminder.
    #[arg(
        long,
        env = "MEDFLOW_DEMO_MAIL_URL",
        default_value = "http://127.0.0.1:1080"
    )]
    pub mail_url: String,
    /// Seconds to wait for the reminder e-mail before going on without it.
    #[arg(long, default_value_t = 150)]
    pub reminder_wait_secs: u64,
    /// Base URLs of the relay, projectors and reminder service, whose Prometheus
    /// metrics the admin reads for relay lag, projector lag and reminder backlog.
    #[arg(long, default_value = "http://127.0.0.1:8082")]
    pub relay_url: String,
    #[arg(long, default_value = "http://127.0.0.1:8083")]
    pub projectors_url: String,
    #[arg(long, default_value = "http://127.0.0.1:8084")]
    pub reminders_url: String,
}

struct Demo {
    http: Client,
    settings: DemoSettings,
    run: String,
}

const PATIENT_PASSWORD: &str = "quartz meadow lantern fig 7";

pub async fn run(settings: DemoSettings) -> anyhow::Result<()> {
    let demo = Demo {
        http: Client::builder().timeout(Duration::from_secs(30)).build()?,
        run: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
        settings,
    };
    demo.check_ready().await?;
    let admin = demo
        .login(
            &demo.settings.platform.admin_email.clone(),
            &demo.settings.platform.admin_password.clone(),
        )
        .await?;
    step("admin logged in");

    let mut people = Vec::new();
    for (role, name) in [
        ("doctor", "Dr. Amara Okafor"),
        ("doctor", "Dr. Lukas Brandt"),
        ("patient", "Mei Tanaka"),
        ("patient", "Diego Alvarez"),
        ("patient", "Sofia Rossi"),
    ] {
        let email = format!(
            "{}.{}@example.org",
            name.to_lowercase().replace(['.', ' '], ""),
            demo.run
        );
        let (account_id, sequence) = demo.register(role, &email, name).await?;
        let token = demo.login(&email, PATIENT_PASSWORD).await?;
        let me = demo.me(&token, sequence).await?;
        step(&format!(
            "registered {role} {account_id}; /me read its own write (status {})",
            me["status"]
        ));
        people.push((account_id, email, token));
    }

    let doctors = demo
        .get(
            &admin,
            &format!(
                "{}/admin/accounts?role=doctor&limit=200",
                demo.settings.platform.query_url
            ),
        )
        .await?;
    let doctor_count = doctors["accounts"].as_array().map_or(0, Vec::len);
    step(&format!(
        "admin's first page of doctor accounts lists {doctor_count}{}",
        if doctors["next_cursor"].is_null() {
            " (all of them)"
        } else {
            "; more pages follow"
        }
    ));

    let weak = demo
        .http
        .post(format!("{}/accounts", demo.settings.platform.command_url))
        .json(&json!({ "role": "patient", "email": format!("weak.{}@example.org", demo.run), "password": "password1234", "name": "Weak Password" }))
        .send()
        .await?;
    let status = weak.status();
    let problem: Value = weak.json().await?;
    expect(
        status == StatusCode::UNPROCESSABLE_ENTITY,
        "a weak password is rejected",
    )?;
    step(&format!(
        "weak password rejected with {status}: {}",
        problem["detail"]
    ));

    let (suspended_id, suspended_email, suspended_token) =
        people.last().cloned().context("no patient")?;
    let path = format!(
        "{}/admin/accounts/{suspended_id}/suspension",
        demo.settings.platform.command_url
    );
    let accepted: Value = demo
        .send(
            demo.http
                .post(&path)
                .bearer_auth(&admin)
                .json(&json!({ "reason": "identity documents expired" })),
        )
        .await?;
    let status = demo.status_of_me(&suspended_token).await?;
    expect(
        status == StatusCode::UNAUTHORIZED,
        "a suspended patient's session is revoked",
    )?;
    let login = demo
        .login_status(&suspended_email, PATIENT_PASSWORD)
        .await?;
    expect(
        login == StatusCode::FORBIDDEN,
        "a suspended patient cannot log in",
    )?;
    let sequence = accepted["sequence"].to_string();
    let list_url = reqwest::Url::parse_with_params(
        &format!("{}/admin/accounts", demo.settings.platform.query_url),
        [
            ("role", "patient"),
            ("email", suspended_email.as_str()),
            ("wait_for_account", suspended_id.as_str()),
            ("wait_for_sequence", sequence.as_str()),
            ("wait_ms", "10000"),
        ],
    )?;
    let listed = demo.get(&admin, list_url.as_str()).await?;
    let shown = listed["accounts"]
        .as_array()
        .and_then(|accounts| {
            accounts
                .iter()
                .find(|a| a["account_id"] == suspended_id.as_str())
                .cloned()
        })
        .context("suspended patient missing from the admin list")?;
    step(&format!(
        "suspended {suspended_id}: session revoked, login refused, list shows {} ({})",
        shown["status"], shown["suspension_reason"]
    ));

    demo.send(demo.http.delete(&path).bearer_auth(&admin))
        .await?;
    let token = demo.login(&suspended_email, PATIENT_PASSWORD).await?;
    step("reinstated the patient, who can log in again");

    let response = demo
        .http
        .delete(format!("{}/sessions", demo.settings.platform.command_url))
        .bearer_auth(&token)
        .send()
        .await?;
    expect(
        response.status() == StatusCode::NO_CONTENT,
        "logout everywhere succeeds",
    )?;
    expect(
        demo.status_of_me(&token).await? == StatusCode::UNAUTHORIZED,
        "the session ends at once",
    )?;
    step("logged out everywhere; the next request got 401");

    let okafor = doctors::DemoDoctor {
        account_id: &people[0].0,
        token: &people[0].2,
        name: "Dr. Amara Okafor",
        specialty: "cardiology",
        time_zone: "Europe/Berlin",
        around_the_clock: true,
    };
    let brandt = doctors::DemoDoctor {
        account_id: &people[1].0,
        token: &people[1].2,
        name: "Dr. Lukas Brandt",
        specialty: "neurology",
        time_zone: "America/New_York",
        around_the_clock: false,
    };
    doctors::onboard(&demo, &okafor).await?;
    doctors::onboard(&demo, &brandt).await?;
    doctors::review(&demo, &admin, &okafor, true).await?;
    doctors::review(&demo, &admin, &brandt, false).await?;
    doctors::browse(&demo, &people[2].2, &okafor).await?;
    let appointment =
        appointments::book_and_move(&demo, &people[2].2, &people[3].2, &okafor).await?;
    platform::reminder_arrives(&demo, &people[2].1).await?;
    doctors::read_rejection(&demo, &brandt).await?;
    platform::review_health(&demo, &admin).await?;
    let patient = audit::Patient {
        account_id: &people[2].0,
        appointment_id: &appointment,
    };
    audit::review(&demo, &admin, &patient, &people[3].2).await?;
    println!(
        "demo finished: {} accounts registered in run {}",
        people.len(),
        demo.run
    );
    Ok(())
}

fn step(message: &str) {
    println!("ok  {message}");
}

fn expect(condition: bool, what: &str) -> anyhow::Result<()> {
    if !condition {
        bail!("expected: {what}");
    }
    Ok(())
}

impl Demo {
    async fn check_ready(&self) -> anyhow::Result<()> {
        for base in [
            &self.settings.platform.command_url,
            &self.settings.platform.query_url,
        ] {
            http::check_ready(&self.http, base).await?;
        }
        step("command and query APIs are ready");
        Ok(())
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request.send().await?;
        http::read_success(response).await
    }

    async fn get(&self, token: &str, url: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(url).bearer_auth(token)).await
    }

    async fn register(&self, role: &str, email: &str, name: &str) -> anyhow::Result<(String, u64)> {
        let body =
            json!({ "role": role, "email": email, "password": PATIENT_PASSWORD, "name": name });
        let accepted = self
            .send(
                self.http
                    .post(format!("{}/accounts", self.settings.platform.command_url))
                    .json(&body),
            )
            .await?;
        let id = accepted["aggregate_id"]
            .as_str()
            .context("aggregate_id missing")?
            .to_owned();
        Ok((
            id,
            accepted["sequence"].as_u64().context("sequence missing")?,
        ))
    }

    async fn login_status(&self, email: &str, password: &str) -> anyhow::Result<StatusCode> {
        let response = self
            .http
            .post(format!("{}/sessions", self.settings.platform.command_url))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await?;
        Ok(response.status())
    }

    async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let request = self
            .http
            .post(format!("{}/sessions", self.settings.platform.command_url))
            .json(&json!({ "email": email, "password": password }));
        let session = self.send(request).await?;
        Ok(session["token"]
            .as_str()
            .context("token missing")?
            .to_owned())
    }

    async fn me(&self, token: &str, sequence: u64) -> anyhow::Result<Value> {
        let url = format!(
            "{}/me?wait_for_sequence={sequence}&wait_ms=10000",
            self.settings.platform.query_url
        );
        self.get(token, &url).await
    }

    async fn status_of_me(&self, token: &str) -> anyhow::Result<StatusCode> {
        Ok(self
            .http
            .get(format!("{}/me", self.settings.platform.query_url))
            .bearer_auth(token)
            .send()
            .await?
            .status())
    }
}
