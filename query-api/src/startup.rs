//! Builds the query API: state, middleware, routes.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use medflow_infra::audit::AuditLog;
use medflow_infra::clock::SharedClock;
use medflow_infra::crypto::index::BlindIndex;
use medflow_infra::crypto::keys::{KeyRing, MasterKeys};
use medflow_infra::db;
use medflow_infra::listener;
use medflow_infra::object_store::ObjectStore;
use medflow_infra::sessions::{SessionPolicy, SessionStore};
use medflow_infra::web::access::AccessLog;
use medflow_infra::web::health::{self, Readiness};
use medflow_infra::web::request_id::RequestIdHeader;
use medflow_infra::web::{metrics, ApiError, MedflowRootSpan};
use tokio_util::sync::CancellationToken;
use tracing_actix_web::TracingLogger;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::doctor_cache::DoctorCache;
use crate::notifications::NotificationHub;
use crate::openapi::ApiDoc;
use crate::state::{AppState, SharedState};
use crate::{query_params, routes, QueryApiSettings};

pub struct Application {
    pub port: u16,
    server: Server,
    /// Stops the notification listener once the server has stopped.
    shutdown: CancellationToken,
}

impl Application {
    /// Builds the server without starting it; `http_addr` with port 0 picks a free port.
    pub async fn build(settings: QueryApiSettings, clock: SharedClock) -> anyhow::Result<Self> {
        let pool = db::pg_pool(&settings.database.url, settings.database.pool_size)?;
        let masters = MasterKeys::parse(&settings.keys.master_keys).map_err(anyhow::Error::msg)?;
        let index = web::Data::new(
            BlindIndex::from_base64(&settings.keys.index_key).map_err(anyhow::Error::msg)?,
        );
        let policy = SessionPolicy {
            idle_timeout: settings.session_idle_timeout,
            absolute_lifetime: settings.session_absolute_lifetime,
        };
        let booking_policy = settings.booking.policy()?;
        let object_store = ObjectStore::new(&settings.object_store)?;
        let sessions = SessionStore::new(pool.clone(), policy, clock.clone());
        let state: SharedState = Arc::new(AppState {
            pool: pool.clone(),
            keys: Arc::new(KeyRing::new(pool.clone(), masters)),
            max_wait_ms: settings.max_wait_ms,
            clock,
            booking_policy,
            object_store,
            audit: AuditLog::new(pool.clone()),
            audit_keys: settings
                .audit
                .trusted_keys()
                .map_err(|reason| anyhow::anyhow!("MEDFLOW_AUDIT_PUBLIC_KEYS: {reason}"))?,
            doctor_cache: DoctorCache::default(),
            directory_cache: Arc::default(),
            notifications: NotificationHub::default(),
        });
        let shutdown = CancellationToken::new();
        listener::spawn(
            settings.database.url.clone(),
            vec![
                Arc::new(state.notifications.clone()),
                Arc::clone(&state.directory_cache) as Arc<dyn listener::Subscriber>,
            ],
            shutdown.clone(),
        );

        let registry = prometheus::Registry::new();
        let http_metrics = metrics::http_metrics("medflow_query_api", registry)?;
        let readiness = Readiness::default()
            .with("postgres", health::postgres_check(pool))
            .with("object_store", state.object_store.readiness_check());
        let listener = TcpListener::bind(settings.http_addr)
            .map_err(|error| anyhow::anyhow!("failed to bind {}: {error}", settings.http_addr))?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(AccessLog::new(
                    state.audit.clone(),
                    Arc::clone(&state.keys),
                    routes::PUBLIC_ROUTES,
                ))
                .wrap(RequestIdHeader)
                .wrap(http_metrics.clone())
                .wrap(TracingLogger::<MedflowRootSpan>::new())
                .app_data(web::Data::new(Arc::clone(&state)))
                .app_data(web::Data::new(sessions.clone()))
                .app_data(index.clone())
                .app_data(web::QueryConfig::default().error_handler(|error, _| {
                    let field_error = query_params::deserialize_error(&error.to_string());
                    ApiError::Validation(vec![field_error]).into()
                }))
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

async fn not_found(request: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        request.method(),
        request.path()
    )))
}
