//! Liveness and readiness endpoints. Liveness reports that the process serves HTTP, and readiness
//! runs each dependency check and answers 503 while any of them fails.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use serde_json::{json, Map, Value};

use crate::config::KafkaSettings;

pub type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Named dependency checks for `/health/ready`.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Check)>,
}

impl Readiness {
    pub fn with(mut self, name: &'static str, check: Check) -> Self {
        self.checks.push((name, check));
        self
    }
}

pub fn configure(config: &mut web::ServiceConfig, readiness: Readiness) {
    config
        .app_data(web::Data::new(readiness))
        .route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready));
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn ready(readiness: web::Data<Readiness>) -> HttpResponse {
    let mut results = Map::new();
    let mut all_ok = true;
    for (name, check) in &readiness.checks {
        let outcome = tokio::time::timeout(Duration::from_secs(3), check()).await;
        let status = match outcome {
            Ok(Ok(())) => "ok".to_owned(),
            Ok(Err(error)) => {
                all_ok = false;
                error
            }
            Err(_) => {
                all_ok = false;
                "timed out after 3 s".to_owned()
            }
        };
        results.insert((*name).to_owned(), Value::String(status));
    }
    let body = json!({ "status": if all_ok { "ready" } else { "unavailable" }, "checks": results });
    if all_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub fn postgres_check(pool: Pool) -> Check {
    Arc::new(move || {
        let pool = pool.clone();
        Box::pin(async move {
            let client = pool
                .get()
                .await
                .map_err(|error| format!("connection failed: {error}"))?;
            client
                .simple_query("SELECT 1")
                .await
                .map(drop)
                .map_err(|error| format!("query failed: {error}"))
        })
    })
}

pub fn kafka_check(settings: KafkaSettings) -> Check {
    Arc::new(move || {
        let settings = settings.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                use rdkafka::consumer::{BaseConsumer, Consumer};
                let consumer: BaseConsumer = crate::kafka::base_config(&settings)
                    .create()
                    .map_err(|error| format!("client creation failed: {error}"))?;
                consumer
                    .fetch_metadata(None, Duration::from_secs(2))
                    .map(drop)
                    .map_err(|error| format!("broker unreachable: {error}"))
            })
            .await
            .map_err(|_| "check task failed".to_owned())?
        })
    })
}
