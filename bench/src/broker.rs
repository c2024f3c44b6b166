//! A private Kafka-protocol broker (nisshi) for one benchmark run, so that other users
//! of the stack's broker and the topics they left behind stay out of the measurement.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

pub struct PrivateBroker {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

impl PrivateBroker {
    /// Starts nisshi on a free loopback port with `storage` as its storage engine
    /// (`memory://nisshi/` or `sqlite://broker.db`, relative to a new temporary folder).
    pub async fn start(storage: &str) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!(
            "medflow-bench-broker-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("broker.log"))?;
        let child = Command::new("nisshi")
            .current_dir(&dir)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                storage,
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|error| {
                anyhow::anyhow!("failed to start nisshi (run scripts/install-deps.sh): {error}")
            })?;
        let broker = Self { port, dir, child };
        for _ in 0..200 {
            let brokers = broker.brokers();
            let ready = tokio::task::spawn_blocking(move || {
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &brokers)
                    .create()
                    .ok()?;
                consumer
                    .fetch_metadata(None, Duration::from_millis(500))
                    .ok()
            })
            .await?
            .is_some();
            if ready {
                return Ok(broker);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "private broker on port {port} did not start; see {}",
            broker.dir.join("broker.log").display()
        )
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
