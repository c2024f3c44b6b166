//! `medflow stack`: starts, stops and reports the local development stack.
//!
//! PostgreSQL is the machine's own server: the stack only creates MedFlow's roles and
//! database in it and never starts or stops it. The Kafka-protocol broker (nisshi), the
//! S3 store (s3s-fs) and the SMTP catcher (maildev) run as detached processes. Each has a
//! folder under the stack directory with its data, its log file and its pid file, and
//! listens on 127.0.0.1 only.

mod broker;
mod mail;
mod postgres;
mod process;
mod s3;
mod secrets;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use process::{ManagedProcess, StopOutcome};

/// Every component listens on this address only.
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// How long `stack down` waits after SIGTERM before it sends SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(clap::Subcommand)]
pub enum StackAction {
    /// Creates the PostgreSQL roles and database, then starts the broker, the S3 store and
    /// the SMTP catcher. Components that are already up are left alone.
    Up(#[command(flatten)] StackSettings),

    /// Stops the processes that `stack up` started. Their data stays unless --purge is given.
    Down {
        /// Also delete each component's data and log, and drop the `medflow` database.
        /// The generated secrets and S3 credentials are kept.
        #[arg(long)]
        purge: bool,

        #[command(flatten)]
        settings: StackSettings,
    },

    /// Prints one line per component and exits with status 1 if any is down.
    Status(#[command(flatten)] StackSettings),
}

/// Location and ports of the local stack.
#[derive(clap::Args, Clone, Debug)]
pub struct StackSettings {
    /// Directory of the stack's state [default: `.stack` in the git top level of the
    /// current directory, or in the current directory outside a git checkout]
    #[arg(long, env = "MEDFLOW_STACK_DIR")]
    pub stack_dir: Option<PathBuf>,

    /// URL of a PostgreSQL superuser on the machine's server, used to create MedFlow's
    /// roles and database. Its host must be a loopback address or a socket directory.
    #[arg(
        long,
        env = "MEDFLOW_ADMIN_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub admin_database_url: String,

    /// TCP port of the Kafka-protocol broker on 127.0.0.1.
    #[arg(long, env = "MEDFLOW_BROKER_PORT", default_value_t = 9092, value_parser = clap::value_parser!(u16).range(1..))]
    pub broker_port: u16,

    /// TCP port of the S3 store on 127.0.0.1.
    #[arg(long, env = "MEDFLOW_S3_PORT", default_value_t = 9000, value_parser = clap::value_parser!(u16).range(1..))]
    pub s3_port: u16,

    /// TCP port of the SMTP catcher's SMTP server on 127.0.0.1.
    #[arg(long, env = "MEDFLOW_SMTP_PORT", default_value_t = 1025, value_parser = clap::value_parser!(u16).range(1..))]
    pub smtp_port: u16,

    /// TCP port of the SMTP catcher's web interface and REST API on 127.0.0.1.
    #[arg(long, env = "MEDFLOW_MAILDEV_WEB_PORT", default_value_t = 1080, value_parser = clap::value_parser!(u16).range(1..))]
    pub maildev_web_port: u16,
}

/// Resolved paths of the stack directory.
pub struct StackLayout {
    /// Absolute path of the stack directory (normally `<repo>/.stack`).
    pub root: PathBuf,
}

impl StackLayout {
    /// Resolves the stack directory from `--stack-dir`, or `.stack` in the git top level
    /// (or the current directory when it is not inside a git checkout).
    fn resolve(settings: &StackSettings) -> anyhow::Result<Self> {
        let current_dir =
            std::env::current_dir().context("failed to read the current directory")?;
        let root = match &settings.stack_dir {
            Some(dir) => current_dir.join(dir),
            None => git_top_level(&current_dir)
                .unwrap_or(current_dir)
                .join(".stack"),
        };
        Ok(Self { root })
    }

    /// Folder of one component: its data, log file and pid file.
    pub fn component_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Folders searched for npm tools such as maildev: `tools/node_modules/.bin` in this
    /// stack directory, then in `<git top level>/.stack`, where `scripts/install-deps.sh`
    /// installs them even when `--stack-dir` points elsewhere.
    pub fn npm_bin_dirs(&self) -> Vec<PathBuf> {
        let npm_bin = |stack_dir: &Path| stack_dir.join("tools").join("node_modules").join(".bin");
        let mut dirs = vec![npm_bin(&self.root)];
        if let Some(top) = std::env::current_dir()
            .ok()
            .and_then(|dir| git_top_level(&dir))
        {
            let repo_bin = npm_bin(&top.join(".stack"));
            if !dirs.contains(&repo_bin) {
                dirs.push(repo_bin);
            }
        }
        dirs
    }

    /// Creates the stack directory if needed and sets its mode to 0700, because it contains
    /// secrets and credentials.
    fn create(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;

        std::fs::create_dir_all(&self.root).with_context(|| {
            format!(
                "failed to create the stack directory {}",
                self.root.display()
            )
        })?;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("failed to set mode 0700 on {}", self.root.display()))
    }
}

fn git_top_level(dir: &Path) -> Option<PathBuf> {
    let output = std::process::Command::new("git")
        .arg("rev-parse")
        .arg("--show-toplevel")
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let top = String::from_utf8(output.stdout).ok()?;
    Some(PathBuf::from(top.trim_end_matches('\n')))
}

/// A component that the stack runs as a detached process.
#[derive(Clone, Copy, Debug)]
enum Service {
    Broker,
    S3,
    Mail,
}

impl Service {
    /// Start order. `stack down` stops them in reverse.
    const ALL: [Service; 3] = [Service::Broker, Service::S3, Service::Mail];

    fn name(self) -> &'static str {
        match self {
            Service::Broker => broker::NAME,
            Service::S3 => s3::NAME,
            Service::Mail => mail::NAME,
        }
    }

    fn managed_process(self, layout: &StackLayout) -> ManagedProcess {
        let program_name = match self {
            Service::Broker => broker::PROGRAM,
            Service::S3 => s3::PROGRAM,
            Service::Mail => mail::PROGRAM,
        };
        ManagedProcess {
            name: self.name(),
            dir: layout.component_dir(self.name()),
            program_name,
        }
    }

    /// Addresses shown to the user, for example `127.0.0.1:9092`.
    fn address(self, settings: &StackSettings) -> String {
        match self {
            Service::Broker => broker::address(settings),
            Service::S3 => s3::address(settings),
            Service::Mail => mail::address(settings),
        }
    }

    /// TCP ports the process listens on. A port that accepts connections while the process
    /// is not running belongs to another program.
    fn ports(self, settings: &StackSettings) -> Vec<u16> {
        match self {
            Service::Broker => vec![settings.broker_port],
            Service::S3 => vec![settings.s3_port],
            Service::Mail => vec![settings.smtp_port, settings.maildev_web_port],
        }
    }

    /// Creates the component's folders and files and returns how to launch it.
    fn prepare(
        self,
        layout: &StackLayout,
        settings: &StackSettings,
    ) -> anyhow::Result<process::Launch> {
        match self {
            Service::Broker => broker::prepare(layout, settings),
            Service::S3 => s3::prepare(layout, settings),
            Service::Mail => mail::prepare(layout, settings),
        }
    }

    fn probe(self, settings: &StackSettings) -> Probe {
        match self {
            Service::Broker => broker::probe(settings),
            Service::S3 => s3::probe(settings),
            Service::Mail => mail::probe(settings),
        }
    }

    /// Files and folders deleted by `stack down --purge`.
    fn purge_paths(self, layout: &StackLayout) -> Vec<PathBuf> {
        match self {
            Service::Broker => broker::purge_paths(layout),
            Service::S3 => s3::purge_paths(layout),
            Service::Mail => mail::purge_paths(layout),
        }
    }

    /// Maximum time from spawning the process until its probe succeeds.
    fn startup_timeout(self) -> Duration {
        match self {
            Service::Broker => broker::STARTUP_TIMEOUT,
            Service::S3 => s3::STARTUP_TIMEOUT,
            Service::Mail => mail::STARTUP_TIMEOUT,
        }
    }
}

/// Runs one `medflow stack` subcommand.
pub async fn run(action: StackAction) -> anyhow::Result<()> {
    match action {
        StackAction::Up(settings) => up(&settings).await,
        StackAction::Down { purge, settings } => down(&settings, purge).await,
        StackAction::Status(settings) => status(&settings).await,
    }
}

async fn up(settings: &StackSettings) -> anyhow::Result<()> {
    let layout = StackLayout::resolve(settings)?;
    layout.create()?;
    eprintln!("stack: state directory {}", layout.root.display());

    let secrets_file = secrets::ensure_platform_secrets(&layout)?;

    // Every component is attempted even when an earlier one fails, so a single run
    // reports everything that needs fixing.
    let mut failed = Vec::new();
    if let Err(error) = postgres::ensure_database(settings).await {
        eprintln!("stack: postgres: {error:#}");
        failed.push("postgres");
    }
    for service in Service::ALL {
        if let Err(error) = start_service(service, &layout, settings).await {
            eprintln!("stack: {}: {error:#}", service.name());
            failed.push(service.name());
        }
    }

    eprintln!(
        "stack: development secrets in {} (load them with: set -a; . {}; set +a)",
        secrets_file.display(),
        secrets_file.display()
    );
    eprintln!(
        "stack: S3 credentials in {}",
        s3::credentials_file(&layout).display()
    );

    if !failed.is_empty() {
        bail!("stack up failed for: {}", failed.join(", "));
    }
    eprintln!("stack: all components are up");
    Ok(())
}

async fn start_service(
    service: Service,
    layout: &StackLayout,
    settings: &StackSettings,
) -> anyhow::Result<()> {
    let name = service.name();
    let managed = service.managed_process(layout);
    let address = service.address(settings);
    let probe = service.probe(settings);

    if let Some(pid) = managed.running_pid()? {
        if probe.check().await.is_ok() {
            eprintln!("stack: {name}: already up at {address} (pid {pid}), left alone");
            return Ok(());
        }
        bail!(
            "pid {pid} from {} is running but does not respond at {address}; check {}, \
             then run `medflow stack down` and `medflow stack up`",
            managed.pid_file().display(),
            managed.log_file().display()
        );
    }

    for port in service.ports(settings) {
        if port_accepts_connections(port) {
            bail!(
                "127.0.0.1:{port} is already in use by a process this stack did not start \
                 (find it with `ss -ltnp 'sport = :{port}'`); stop that process or choose \
                 another port (see `medflow stack up --help`)"
            );
        }
    }

    let launch = service.prepare(layout, settings)?;
    let mut child = managed.start(&launch)?;
    eprintln!(
        "stack: {name}: started pid {}, waiting for {address} (log {})",
        child.id(),
        managed.log_file().display()
    );

    managed
        .wait_until_ready(&mut child, &probe, service.startup_timeout())
        .await?;
    eprintln!("stack: {name}: up at {address}");
    Ok(())
}

async fn down(settings: &StackSettings, purge: bool) -> anyhow::Result<()> {
    let layout = StackLayout::resolve(settings)?;
    let mut failed = Vec::new();

    for service in Service::ALL.into_iter().rev() {
        let name = service.name();
        let managed = service.managed_process(&layout);
        match managed.stop(STOP_GRACE) {
            Ok(StopOutcome::NotRunning) => eprintln!("stack: {name}: not running"),
            Ok(StopOutcome::Terminated(pid)) => eprintln!("stack: {name}: stopped pid {pid}"),
            Ok(StopOutcome::Killed(pid)) => eprintln!(
                "stack: {name}: pid {pid} ignored SIGTERM for {} s and was killed with SIGKILL",
                STOP_GRACE.as_secs()
            ),
            Err(error) => {
                eprintln!("stack: {name}: {error:#}");
                failed.push(name);
                continue;
            }
        }

        if purge {
            let mut deleted = true;
            for path in service.purge_paths(&layout) {
                if let Err(error) = remove_path(&path) {
                    eprintln!("stack: {name}: {error:#}");
                    deleted = false;
                }
            }
            if deleted {
                eprintln!("stack: {name}: data and log deleted");
            } else {
                failed.push(name);
            }
        }
    }

    if purge {
        match postgres::drop_database(settings).await {
            Ok(()) => eprintln!(
                "stack: postgres: database {} dropped, roles kept",
                postgres::DATABASE
            ),
            Err(error) => {
                eprintln!("stack: postgres: {error:#}");
                failed.push("postgres");
            }
        }
    } else {
        eprintln!(
            "stack: postgres: left running (it is the machine's server, not started by the stack)"
        );
    }

    if !failed.is_empty() {
        bail!("stack down failed for: {}", failed.join(", "));
    }
    Ok(())
}

fn remove_path(path: &Path) -> anyhow::Result<()> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("failed to delete {}", path.display())),
    }
}

async fn status(settings: &StackSettings) -> anyhow::Result<()> {
    let layout = StackLayout::resolve(settings)?;
    let mut rows = Vec::new();

    let postgres_status = postgres::status(settings).await;
    rows.push(StatusRow {
        name: "postgres",
        up: postgres_status.up,
        address: postgres_status.address,
        pid: "-".to_owned(),
        detail: postgres_status.detail,
    });

    for service in Service::ALL {
        let managed = service.managed_process(&layout);
        let pid = managed.running_pid()?;
        let readiness = service.probe(settings).check().await;
        let log = managed.log_file();

        let (up, detail) = match (pid, readiness) {
            (Some(_), Ok(())) => (true, format!("log {}", log.display())),
            (Some(_), Err(error)) => (
                false,
                format!("running but not ready ({error:#}); see {}", log.display()),
            ),
            (None, Ok(())) => (
                false,
                "a process this stack did not start listens on the port".to_owned(),
            ),
            (None, Err(_)) => (false, "not running".to_owned()),
        };
        rows.push(StatusRow {
            name: service.name(),
            up,
            address: service.address(settings),
            pid: pid.map_or_else(|| "-".to_owned(), |pid| format!("pid {pid}")),
            detail,
        });
    }

    let address_width = rows.iter().map(|row| row.address.len()).max().unwrap_or(0);
    let pid_width = rows.iter().map(|row| row.pid.len()).max().unwrap_or(0);
    for row in &rows {
        println!(
            "{:<9} {:<4} {:<address_width$}  {:<pid_width$}  {}",
            row.name,
            if row.up { "up" } else { "down" },
            row.address,
            row.pid,
            row.detail
        );
    }

    let down_count = rows.iter().filter(|row| !row.up).count();
    if down_count > 0 {
        bail!(
            "{down_count} of {} components are down; run `medflow stack up`",
            rows.len()
        );
    }
    Ok(())
}

/// One line of `stack status`.
struct StatusRow {
    name: &'static str,
    up: bool,
    address: String,
    pid: String,
    detail: String,
}

/// Readiness check of a started component.
pub enum Probe {
    /// A Kafka metadata request to 127.0.0.1 at `port` must succeed and list the broker.
    Kafka { port: u16 },
    /// An HTTP GET of `url` must return a response, and a 2xx status when
    /// `require_success` is set.
    Http { url: String, require_success: bool },
}

impl Probe {
    /// Runs the check once. The error names the request that failed.
    pub async fn check(&self) -> anyhow::Result<()> {
        match self {
            Probe::Kafka { port } => broker::check_metadata(*port).await,
            Probe::Http {
                url,
                require_success,
            } => {
                let response = loopback_http_client()?
                    .get(url)
                    .send()
                    .await
                    .with_context(|| format!("GET {url} failed"))?;
                if *require_success && !response.status().is_success() {
                    bail!("GET {url} returned {}", response.status());
                }
                Ok(())
            }
        }
    }
}

/// Returns whether something accepts TCP connections on 127.0.0.1 at `port`.
fn port_accepts_connections(port: u16) -> bool {
    let address = SocketAddr::from((LOOPBACK, port));
    TcpStream::connect_timeout(&address, Duration::from_millis(300)).is_ok()
}

/// HTTP client for probing the stack's own HTTP servers. Proxies from the environment are
/// ignored so a probe of 127.0.0.1 never leaves the machine.
fn loopback_http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .context("failed to build the HTTP client")
}
