//! Kafka-protocol broker: nisshi 0.7.0-pre.2 keeping topics and offsets in memory, so
//! they do not survive `stack down`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use super::process::{find_program, Launch};
use super::{Probe, StackLayout, StackSettings, LOOPBACK};

pub const NAME: &str = "broker";
pub const PROGRAM: &str = "nisshi";
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// In-memory storage. With `sqlite://broker.db`, nisshi 0.7.0-pre.2 stopped responding
/// to fetches of a topic that took about 70 records/s while two consumer groups read it
/// (2 000 bookings by `medflow seed`), and spun a core until restarted. In memory the
/// same run passed. The end-to-end tests that restart a broker start their own with
/// SQLite storage (`medflow_tests::broker`).
const STORAGE_ENGINE_URL: &str = "memory://nisshi/";

/// Variables nisshi reads as defaults for its flags. The flags below override most of
/// them, but a schema registry or OTLP endpoint inherited from the shell would make the
/// broker contact another host, so all are removed.
const NISSHI_ENV: [&str; 6] = [
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Time allowed for one metadata request while probing.
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

pub fn address(settings: &StackSettings) -> String {
    format!("{LOOPBACK}:{}", settings.broker_port)
}

pub fn prepare(layout: &StackLayout, settings: &StackSettings) -> anyhow::Result<Launch> {
    let dir = layout.component_dir(NAME);
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;

    let program = find_program(PROGRAM, &[]).ok_or_else(|| {
        anyhow!("{PROGRAM} not found on PATH or in ~/.cargo/bin; run scripts/install-deps.sh")
    })?;
    let listener_url = format!("tcp://{}", address(settings));
    Ok(Launch {
        program,
        args: [
            "broker",
            "--listener-url",
            &listener_url,
            "--advertised-listener-url",
            &listener_url,
            "--storage-engine",
            STORAGE_ENGINE_URL,
        ]
        .map(Into::into)
        .to_vec(),
        env: Vec::new(),
        env_remove: NISSHI_ENV.map(String::from).to_vec(),
    })
}

pub fn probe(settings: &StackSettings) -> Probe {
    Probe::Kafka {
        port: settings.broker_port,
    }
}

/// Returns the paths `stack down --purge` deletes: the whole component folder, with the
/// log (and the SQLite files of stacks started before the broker kept data in memory).
pub fn purge_paths(layout: &StackLayout) -> Vec<PathBuf> {
    vec![layout.component_dir(NAME)]
}

/// Sends a Kafka metadata request to 127.0.0.1 at `port` and checks that the broker
/// advertises that same address, which clients will connect to after bootstrapping.
pub async fn check_metadata(port: u16) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || fetch_metadata_blocking(port))
        .await
        .context("the metadata request task panicked")?
}

fn fetch_metadata_blocking(port: u16) -> anyhow::Result<()> {
    let bootstrap = format!("{LOOPBACK}:{port}");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("socket.connection.setup.timeout.ms", "1000")
        .create()
        .context("failed to create the Kafka client")?;
    let metadata = consumer
        .fetch_metadata(None, METADATA_TIMEOUT)
        .with_context(|| format!("metadata request to {bootstrap} failed"))?;

    let advertised: Vec<String> = metadata
        .brokers()
        .iter()
        .map(|broker| format!("{}:{}", broker.host(), broker.port()))
        .collect();
    if !advertised.contains(&bootstrap) {
        bail!("the broker at {bootstrap} advertises {advertised:?}, expected {bootstrap}");
    }
    Ok(())
}
