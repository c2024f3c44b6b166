//! A dedicated Kafka-protocol broker (nisshi) for tests that stop the broker, so they
//! do not disturb tests sharing the stack's broker.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

pub struct DedicatedBroker {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl DedicatedBroker {
    pub async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("medflow-broker-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("broker directory");
        let mut broker = Self {
            port,
            dir,
            child: None,
        };
        broker.resume().await;
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts (again) the broker on the same port and data.
    pub async fn resume(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.join("broker.log")).expect("broker log");
        let child = Command::new("nisshi")
            .current_dir(&self.dir)
            .args(crate::broker::broker_args(&url))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nisshi is installed (scripts/install-deps.sh)");
        self.child = Some(child);
        let brokers = self.brokers();
        for _ in 0..200 {
            let brokers = brokers.clone();
            let ready = tokio::task::spawn_blocking(move || {
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &brokers)
                    .create()
                    .ok()?;
                consumer
                    .fetch_metadata(None, Duration::from_millis(500))
                    .ok()
            })
            .await
            .ok()
            .flatten()
            .is_some();
            if ready {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "dedicated broker on port {} did not start; see {}",
            self.port,
            self.dir.display()
        );
    }

    /// Kills the broker; clients see it as down until [`resume`](Self::resume).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

impl Drop for DedicatedBroker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Arguments that start nisshi listening and advertising `url`, with its SQLite data in
/// the working directory.
pub fn broker_args(url: &str) -> Vec<String> {
    [
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "sqlite://broker.db",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect()
}
