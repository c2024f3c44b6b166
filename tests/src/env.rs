//! One test's isolated environment on the shared local stack.

use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use medflow_command_api::CommandApiSettings;
use medflow_infra::audit::signing::CheckpointSigner;
use medflow_infra::clock;
use medflow_infra::config::{
    AuditSealSettings, AuditVerifySettings, BookingSettings, DatabaseSettings, KafkaSettings,
    KeySettings,
};
use medflow_infra::video::LiveKitSettings;
use medflow_projectors::framework::metrics::ProjectorMetrics;
use medflow_query_api::QueryApiSettings;
use medflow_relay::metrics::RelayMetrics;
use medflow_relay::RelaySettings;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::database;

pub const LOCAL_BROKERS: &str = "127.0.0.1:9092";

pub struct TestEnv {
    pub database: String,
    pub topic_prefix: String,
    pub brokers: String,
    pub master_keys: String,
    pub index_key: String,
    /// LiveKit API key and secret of this test run.
    pub livekit_key: String,
    pub livekit_secret: String,
    /// Ed25519 seed that signs this run's audit checkpoints, and its public key.
    pub audit_signing_key: String,
    pub audit_public_key: String,
    shutdown: CancellationToken,
    /// Relay, projector and reminder tasks, so a test can wait for them to stop.
    services: TaskTracker,
}

fn random_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    STANDARD.encode(bytes)
}

fn loopback_any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("valid address")
}

impl TestEnv {
    pub async fn new() -> Self {
        let database = database::create_test_database().await;
        let suffix = &database["medflow_test_".len()..][..12];
        let audit_signing_key = CheckpointSigner::generate_seed();
        let audit_public_key =
            CheckpointSigner::from_base64_seed(&audit_signing_key.clone().into())
                .expect("generated seed is valid")
                .public_key_base64();
        Self {
            audit_signing_key,
            audit_public_key,
            topic_prefix: format!("t{suffix}."),
            database,
            brokers: LOCAL_BROKERS.to_owned(),
            master_keys: format!("test1:{}", random_key()),
            index_key: random_key(),
            livekit_key: format!("APItest{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            livekit_secret: random_key(),
            shutdown: CancellationToken::new(),
            services: TaskTracker::new(),
        }
    }

    /// Stops the relay, projectors and reminder service of this environment and waits
    /// until they have let go of their Kafka clients. A test that kills its own broker
    /// calls this while the broker is still up: a consumer dropped later, with its group
    /// coordinator gone, can block its thread for minutes while leaving the group.
    pub async fn stop_services(&self) {
        self.shutdown.cancel();
        self.services.close();
        tokio::time::timeout(Duration::from_secs(60), self.services.wait())
            .await
            .expect("relay, projectors and reminders stop within 60 s");
    }

    /// Points every service of this environment at another broker.
    pub fn with_brokers(mut self, brokers: &str) -> Self {
        self.brokers = brokers.to_owned();
        self
    }

    pub fn app_url(&self) -> String {
        database::url("medflow_app", &self.database)
    }

    pub fn owner_url(&self) -> String {
        database::url("medflow_owner", &self.database)
    }

    pub fn database_settings(&self) -> DatabaseSettings {
        DatabaseSettings {
            url: SecretString::from(self.app_url()),
            pool_size: 8,
        }
    }

    pub fn kafka_settings(&self) -> KafkaSettings {
        KafkaSettings {
            brokers: self.brokers.clone(),
            topic_prefix: self.topic_prefix.clone(),
            session_timeout_ms: 6000,
        }
    }

    pub fn key_settings(&self) -> KeySettings {
        KeySettings {
            master_keys: SecretString::from(self.master_keys.clone()),
            index_key: SecretString::from(self.index_key.clone()),
        }
    }

    /// Environment variables that configure a service process like this environment.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        vec![
            ("MEDFLOW_DATABASE_URL".into(), self.app_url()),
            ("MEDFLOW_KAFKA_BROKERS".into(), self.brokers.clone()),
            (
                "MEDFLOW_KAFKA_TOPIC_PREFIX".into(),
                self.topic_prefix.clone(),
            ),
            ("MEDFLOW_KAFKA_SESSION_TIMEOUT_MS".into(), "6000".into()),
            ("MEDFLOW_MASTER_KEYS".into(), self.master_keys.clone()),
            ("MEDFLOW_INDEX_KEY".into(), self.index_key.clone()),
            ("MEDFLOW_LIVEKIT_API_KEY".into(), self.livekit_key.clone()),
            (
                "MEDFLOW_LIVEKIT_API_SECRET".into(),
                self.livekit_secret.clone(),
            ),
            ("MEDFLOW_LOG_FORMAT".into(), "pretty".into()),
            (
                "MEDFLOW_AUDIT_SIGNING_KEY".into(),
                self.audit_signing_key.clone(),
            ),
            (
                "MEDFLOW_AUDIT_PUBLIC_KEYS".into(),
                self.audit_public_key.clone(),
            ),
            (
                "MEDFLOW_S3_ACCESS_KEY".into(),
                self.object_store_settings()
                    .access_key
                    .expose_secret()
                    .to_owned(),
            ),
            (
                "MEDFLOW_S3_SECRET_KEY".into(),
                self.object_store_settings()
                    .secret_key
                    .expose_secret()
                    .to_owned(),
            ),
        ]
    }

    pub fn command_settings(&self) -> CommandApiSettings {
        CommandApiSettings {
            database: self.database_settings(),
            keys: self.key_settings(),
            object_store: self.object_store_settings(),
            booking: BookingSettings::default(),
            livekit: self.livekit_settings(),
            video_join_before_minutes: 10,
            video_join_after_minutes: 15,
            http_addr: loopback_any_port(),
            session_idle_timeout: Duration::from_secs(1800),
            session_absolute_lifetime: Duration::from_secs(12 * 3600),
            session_cache_max_age: Duration::from_secs(30),
            login_attempts_per_account: 1000,
            login_attempts_per_address: 1000,
            password_hash_concurrency: 2,
            password_scrypt_log_n: medflow_infra::crypto::password::LOG_N,
        }
    }

    pub fn livekit_settings(&self) -> LiveKitSettings {
        LiveKitSettings {
            url: "ws://127.0.0.1:7880".into(),
            api_key: self.livekit_key.clone(),
            api_secret: SecretString::from(self.livekit_secret.clone()),
        }
    }

    pub fn query_settings(&self) -> QueryApiSettings {
        QueryApiSettings {
            database: self.database_settings(),
            keys: self.key_settings(),
            object_store: self.object_store_settings(),
            booking: BookingSettings::default(),
            http_addr: loopback_any_port(),
            session_idle_timeout: Duration::from_secs(1800),
            session_absolute_lifetime: Duration::from_secs(12 * 3600),
            max_wait_ms: 20_000,
            audit: AuditVerifySettings {
                public_keys: self.audit_public_key.clone(),
            },
        }
    }

    pub fn relay_settings(&self) -> RelaySettings {
        RelaySettings {
            database: self.database_settings(),
            kafka: self.kafka_settings(),
            http_addr: loopback_any_port(),
            name: "main".into(),
            batch_size: 500,
            poll_interval_ms: 10,
            audit: self.audit_seal_settings(),
        }
    }

    pub fn audit_seal_settings(&self) -> AuditSealSettings {
        AuditSealSettings {
            signing_key: Some(SecretString::from(self.audit_signing_key.clone())),
            seal_interval: Duration::from_millis(200),
        }
    }

    /// Starts the command API in this process; returns its base URL.
    pub async fn start_command_api_with(&self, settings: CommandApiSettings) -> String {
        self.start_command_api_with_clock(settings, clock::system_clock())
            .await
    }

    pub async fn start_command_api_with_clock(
        &self,
        settings: CommandApiSettings,
        clock: clock::SharedClock,
    ) -> String {
        let application = medflow_command_api::Application::build(settings, clock)
            .await
            .expect("command API starts");
        let url = format!("http://127.0.0.1:{}", application.port);
        tokio::spawn(application.run_until_stopped());
        url
    }

    pub async fn start_command_api(&self) -> String {
        self.start_command_api_with(self.command_settings()).await
    }

    pub async fn start_query_api(&self) -> String {
        self.start_query_api_with(self.query_settings()).await
    }

    pub async fn start_query_api_with(&self, settings: QueryApiSettings) -> String {
        self.start_query_api_with_clock(settings, clock::system_clock())
            .await
    }

    pub async fn start_query_api_with_clock(
        &self,
        settings: QueryApiSettings,
        clock: clock::SharedClock,
    ) -> String {
        let application = medflow_query_api::Application::build(settings, clock)
            .await
            .expect("query API starts");
        let url = format!("http://127.0.0.1:{}", application.port);
        tokio::spawn(application.run_until_stopped());
        url
    }

    /// Starts the relay in this process; cancel the returned token to stop it.
    pub fn start_relay(&self) -> CancellationToken {
        let token = self.shutdown.child_token();
        let settings = self.relay_settings();
        let pool = medflow_infra::db::pg_pool(&settings.database.url, 4).expect("relay pool");
        let metrics = RelayMetrics::register(&prometheus::Registry::new()).expect("relay metrics");
        let relay = medflow_relay::Relay::new(settings, pool, metrics);
        let run_token = token.clone();
        self.services.spawn(async move {
            if let Err(error) = relay.run(run_token).await {
                eprintln!("relay failed: {error:#}");
            }
        });
        token
    }

    /// Starts every projection in this process; cancel the returned token to stop them.
    pub fn start_projectors(&self) -> CancellationToken {
        let token = self.shutdown.child_token();
        let pool = medflow_infra::db::pg_pool(&SecretString::from(self.app_url()), 4)
            .expect("projector pool");
        let metrics =
            ProjectorMetrics::register(&prometheus::Registry::new()).expect("projector metrics");
        for projection in medflow_projectors::all_projections() {
            let task = medflow_projectors::framework::run(
                projection,
                pool.clone(),
                self.kafka_settings(),
                metrics.clone(),
                token.clone(),
            );
            self.services.spawn(async move {
                if let Err(error) = task.await {
                    eprintln!("projector failed: {error:#}");
                }
            });
        }
        token
    }

    pub fn reminder_settings(&self) -> medflow_reminder_service::ReminderSettings {
        medflow_reminder_service::ReminderSettings {
            database: self.database_settings(),
            kafka: self.kafka_settings(),
            keys: self.key_settings(),
            http_addr: loopback_any_port(),
            smtp_url: "smtp://127.0.0.1:1025".into(),
            mail_from: "MedFlow <reminders@medflow.example>".into(),
            frontend_base_url: "https://app.medflow.example".into(),
            workers: 2,
            poll_interval_ms: 50,
            clock_offset_secs: 0,
            clock_speed: 1.0,
            abort_after_smtp: false,
            stall: medflow_projectors::settings::StallSettings { limit_secs: 120 },
        }
    }

    /// Starts a reminder service in this process on `clock`; cancel the returned token
    /// to stop it.
    pub fn start_reminders_with(
        &self,
        settings: medflow_reminder_service::ReminderSettings,
        clock: clock::SharedClock,
    ) -> CancellationToken {
        let token = self.shutdown.child_token();
        // Every sender keeps a connection for the whole send, and the consumer and gauge
        // need more.
        let pool = medflow_infra::db::pg_pool(&settings.database.url, settings.workers + 4)
            .expect("reminder pool");
        let run_token = token.clone();
        self.services.spawn(async move {
            let registry = prometheus::Registry::new();
            let consumer_metrics =
                ProjectorMetrics::register(&registry).expect("reminder consumer metrics");
            if let Err(error) = medflow_reminder_service::run(
                settings,
                pool,
                clock,
                &registry,
                consumer_metrics,
                run_token,
            )
            .await
            {
                eprintln!("reminder service failed: {error:#}");
            }
        });
        token
    }

    /// Starts command API, query API, relay and projectors in this process.
    pub async fn start_spine(&self) -> crate::api::Api {
        let command = self.start_command_api().await;
        let query = self.start_query_api().await;
        self.start_relay();
        self.start_projectors();
        crate::api::Api::new(&command, &query)
    }

    pub async fn app_client(&self) -> tokio_postgres::Client {
        database::connect(&self.app_url()).await
    }

    pub async fn owner_client(&self) -> tokio_postgres::Client {
        database::connect(&self.owner_url()).await
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let name = self.database.clone();
        // Drop runs outside async context guarantees, so the cleanup gets its own runtime.
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(database::drop_database(&name));
            }
        })
        .join();
    }
}

impl TestEnv {
    /// Creates an admin the way `medflow create-admin` does; returns its account id.
    pub async fn create_admin(&self, email: &str) -> String {
        use medflow_command_api::routes::accounts::{register_account, validate};
        use medflow_command_api::state::AppState;
        use medflow_domain::values::Role;
        use medflow_infra::event_store::EventMetadata;

        let (state, _) = AppState::build(&self.command_settings(), clock::system_clock())
            .await
            .expect("command state builds");
        let registration = validate(Ok(Role::Admin), email, "Ada Admin", crate::api::PASSWORD)
            .expect("valid admin registration");
        let metadata = EventMetadata {
            actor_id: None,
            actor_role: None,
            request_id: "test-bootstrap".into(),
            session_id: None,
        };
        register_account(&state, registration, None, metadata)
            .await
            .expect("admin registered")
            .aggregate_id
    }
}

impl TestEnv {
    /// Object store settings for the stack's S3 server, with the credentials that
    /// `medflow stack up` generated.
    pub fn object_store_settings(&self) -> medflow_infra::object_store::ObjectStoreSettings {
        let stack_dir = std::env::var_os("MEDFLOW_STACK_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.stack")
            });
        let path = stack_dir.join("s3/credentials.env");
        let contents = std::fs::read_to_string(&path).unwrap_or_else(|error| {
            panic!(
                "cannot read {}: {error}; run `medflow stack up`",
                path.display()
            )
        });
        let value = |name: &str| {
            contents
                .lines()
                .filter_map(|line| line.split_once('='))
                .find(|(key, _)| key.trim() == name)
                .map(|(_, value)| value.trim().to_owned())
                .unwrap_or_else(|| panic!("{name} missing from {}", path.display()))
        };
        medflow_infra::object_store::ObjectStoreSettings {
            endpoint: "http://127.0.0.1:9000".into(),
            region: "us-east-1".into(),
            bucket: "medflow-documents".into(),
            access_key: SecretString::from(value("MEDFLOW_S3_ACCESS_KEY")),
            secret_key: SecretString::from(value("MEDFLOW_S3_SECRET_KEY")),
            presign_expiry_secs: 600,
        }
    }
}
