//! Builds the command API: state, middleware, routes.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use medflow_infra::clock::SharedClock;
use medflow_infra::listener;
use medflow_infra::web::access::AccessLog;
use medflow_infra::web::auth::SessionCheck;
use medflow_infra::web::health::{self, Readiness};
use medflow_infra::web::request_id::RequestIdHeader;
use medflow_infra::web::{metrics, MedflowRootSpan};
use tokio_util::sync::CancellationToken;
use tracing_actix_web::TracingLogger;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::openapi::ApiDoc;
use crate::state::{AppState, SharedState};
use crate::{routes, CommandApiSettings};

pub struct Application {
    pub port: u16,
    server: Server,
    /// Stops the database listener once the server has stopped.
    shutdown: CancellationToken,
}

impl Application {
    /// Builds the server without starting it; `http_addr` with port 0 picks a free port.
    pub async fn build(settings: CommandApiSettings, clock: SharedClock) -> anyhow::Result<Self> {
        let (state, pool) = AppState::build(&settings, clock).await?;
        let sessions = state.sessions.clone();
        let shutdown = CancellationToken::new();
        if let Some(cache) = sessions.cache() {
            listener::spawn(settings.database.url.clone(), vec![cache], shutdown.clone());
        }
        let login_limiter = state.login_limiter.clone();
        let state: SharedState = Arc::new(state);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                login_limiter.forget_idle();
            }
        });

        let registry = prometheus::Registry::new();
        let http_metrics = metrics::http_metrics("medflow_command_api", registry)?;
        let readiness = Readiness::default()
            .with("postgres", health::postgres_check(pool))
            .with("object_store", state.object_store.readiness_check());
        let listener = TcpListener::bind(settings.http_addr)
            .map_err(|error| anyhow::anyhow!("failed to bind {}: {error}", settings.http_addr))?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(SessionCheck)
                .wrap(AccessLog::failures_only(
                    state.audit.clone(),
                    Arc::clone(&state.keys),
                    routes::UNAUDITED_ROUTES,
                ))
                .wrap(RequestIdHeader)
                .wrap(http_metrics.clone())
                .wrap(TracingLogger::<MedflowRootSpan>::new())
                .app_data(web::Data::new(Arc::clone(&state)))
                .app_data(web::Data::new(sessions.clone()))
                .configure(|config| health::configure(config, readiness.clone()))
                .configure(metrics::metrics_route)
                .configure(routes::configure)
                .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", ApiDoc::openapi()))
                .route("/docs", web::get().to(redirect_to_docs))
                .default_service(web::to(not_found))
        })
        .listen(listener)?
        .run();
        Ok(Self {
            port,
            server,
            shutdown,
        })
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.shutdown.cancel();
        result
    }
}

/// Swagger UI lives under `/docs/`; the bare path redirects there.
async fn redirect_to_docs() -> HttpResponse {
    HttpResponse::Found()
        .insert_header(("location", "/docs/"))
        .finish()
}

async fn not_found(
    request: actix_web::HttpRequest,
) -> Result<HttpResponse, medflow_infra::web::ApiError> {
    Err(medflow_infra::web::ApiError::NotFound(format!(
        "no route for {} {}",
        request.method(),
        request.path()
    )))
}
