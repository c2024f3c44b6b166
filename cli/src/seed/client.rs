//! The seeder's HTTP client. It times and classifies every request per endpoint, waits
//! out 429 responses for their Retry-After, and renews an expired session once by
//! logging in again.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{json, Value};

use super::progress::Progress;

/// Password of every seeded account. Seeded accounts hold no real data, and a shared
/// password lets an operator log in as any of them.
pub const SEEDED_PASSWORD: &str = "quartz meadow lantern fig 7";

/// Maximum wait after one 429 response before the request is sent again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Time added to each Retry-After, which the command API rounds down to whole seconds.
const RETRY_MARGIN: Duration = Duration::from_millis(500);

/// Endpoints as the summary groups them, in the order of its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    Register,
    Login,
    DoctorProfile,
    Availability,
    TimeOff,
    UploadTicket,
    ObjectUpload,
    AttachDocument,
    Submission,
    VerificationQueue,
    DownloadUrl,
    ObjectDownload,
    Approval,
    Rejection,
    Directory,
    Slots,
    Book,
    Reschedule,
    Cancel,
    DoctorSuspension,
}

impl Endpoint {
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Register => "POST /accounts",
            Endpoint::Login => "POST /sessions",
            Endpoint::DoctorProfile => "PUT /doctors/me/profile",
            Endpoint::Availability => "PUT /doctors/me/availability",
            Endpoint::TimeOff => "POST /doctors/me/time-off",
            Endpoint::UploadTicket => "POST /doctors/me/license-documents/uploads",
            Endpoint::ObjectUpload => "PUT presigned upload (S3)",
            Endpoint::AttachDocument => "POST /doctors/me/license-documents",
            Endpoint::Submission => "POST /doctors/me/submission",
            Endpoint::VerificationQueue => "GET /admin/doctors/verification-queue",
            Endpoint::DownloadUrl => "GET /admin/doctors/{id}/license-documents/{id}/download-url",
            Endpoint::ObjectDownload => "GET presigned download (S3)",
            Endpoint::Approval => "POST /admin/doctors/{id}/approval",
            Endpoint::Rejection => "POST /admin/doctors/{id}/rejection",
            Endpoint::Directory => "GET /doctors",
            Endpoint::Slots => "GET /doctors/{id}/slots",
            Endpoint::Book => "POST /appointments",
            Endpoint::Reschedule => "POST /appointments/{id}/reschedule",
            Endpoint::Cancel => "POST /appointments/{id}/cancellation",
            Endpoint::DoctorSuspension => "POST /admin/doctors/{id}/suspension",
        }
    }

    /// Name of the aggregate type that a command sent to this endpoint changes, used to
    /// count events from the returned sequences. Doctor profiles and accounts share ids.
    fn aggregate_type(self) -> &'static str {
        match self {
            Endpoint::Register => "account",
            Endpoint::Book | Endpoint::Reschedule | Endpoint::Cancel => "appointment",
            _ => "doctor",
        }
    }
}

/// A status, optionally narrowed to one problem type, that a caller expects besides
/// success, such as 409 `slot-taken` when a slot was booked by someone else meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    status: StatusCode,
    problem: Option<&'static str>,
}

impl Expected {
    pub const fn status(status: StatusCode) -> Self {
        Self {
            status,
            problem: None,
        }
    }

    /// Only `status` responses whose problem `type` ends with `:{problem}`.
    pub const fn problem(status: StatusCode, problem: &'static str) -> Self {
        Self {
            status,
            problem: Some(problem),
        }
    }

    fn matches(&self, reply: &Reply) -> bool {
        reply.status == self.status
            && self
                .problem
                .is_none_or(|problem| reply.problem_type() == problem)
    }
}

/// A response that was a success or one of the expected statuses.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub bytes: Vec<u8>,
    body: Value,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    pub fn json(&self) -> &Value {
        &self.body
    }

    /// Last segment of the problem `type`, such as `slot-taken`, or "" without one.
    pub fn problem_type(&self) -> &str {
        self.body["type"]
            .as_str()
            .and_then(|uri| uri.rsplit(':').next())
            .unwrap_or("")
    }
}

/// A request that failed and was counted in the statistics; the seeder skips what
/// depended on it.
#[derive(Debug)]
pub struct RequestFailed;

/// A logged-in account whose token is replaced when the platform reports it expired.
/// Not `Debug`, because it contains the password and the bearer token.
pub struct Session {
    pub account_id: String,
    pub email: String,
    password: String,
    token: Mutex<String>,
}

impl Session {
    pub fn token(&self) -> String {
        self.token.lock().expect("token lock").clone()
    }
}

/// Counts and latencies of one endpoint.
struct EndpointStats {
    requests: u64,
    succeeded: u64,
    expected: u64,
    server_errors: u64,
    client_errors: u64,
    transport_errors: u64,
    rate_limited: u64,
    latency_micros: Histogram<u64>,
}

impl EndpointStats {
    fn new() -> Self {
        Self {
            requests: 0,
            succeeded: 0,
            expected: 0,
            server_errors: 0,
            client_errors: 0,
            transport_errors: 0,
            rate_limited: 0,
            // One microsecond to ten minutes with three significant digits.
            latency_micros: Histogram::new_with_bounds(1, 600_000_000, 3)
                .expect("valid histogram bounds"),
        }
    }
}

/// One row of the summary's endpoint table.
#[derive(Debug, Clone)]
pub struct EndpointSummary {
    pub endpoint: Endpoint,
    pub requests: u64,
    pub succeeded: u64,
    /// Responses with an expected status, such as 409 for a slot booked meanwhile.
    pub expected: u64,
    pub server_errors: u64,
    /// 4xx responses that the seeder did not expect.
    pub client_errors: u64,
    /// Requests that got no response: connection failures and timeouts.
    pub transport_errors: u64,
    /// 429 responses that were waited out and sent again.
    pub rate_limited: u64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// A failure kind with its count and the first problem detail seen for it.
#[derive(Debug, Clone)]
pub struct FailureSample {
    pub endpoint: Endpoint,
    /// HTTP status, or `None` when no response arrived.
    pub status: Option<u16>,
    pub problem_type: String,
    pub count: u64,
    pub first_detail: String,
}

#[derive(Default)]
struct Tally {
    endpoints: BTreeMap<Endpoint, EndpointStats>,
    failures: BTreeMap<(Endpoint, Option<u16>, String), FailureSample>,
    /// Last sequence seen per (aggregate type, aggregate id).
    sequences: HashMap<(&'static str, String), u64>,
    events: u64,
}

/// Earliest time of the next request to a rate-limited endpoint. Its lock is held while
/// one request is in flight.
type Throttle = Arc<tokio::sync::Mutex<Instant>>;

/// Instrumented HTTP client shared by every task of a seeding run.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    command_url: Arc<str>,
    tally: Arc<Mutex<Tally>>,
    /// Endpoints that returned 429 at least once. From then on their requests go one at
    /// a time, because every rejected attempt still uses up login quota on the platform.
    throttles: Arc<Mutex<HashMap<Endpoint, Throttle>>>,
    accepted_commands: Arc<AtomicU64>,
    session_renewals: Arc<AtomicU64>,
    progress: Progress,
}

impl Client {
    pub fn new(command_url: &str, concurrency: usize, progress: Progress) -> anyhow::Result<Self> {
        // Logins and registrations queue behind the platform's password hashing, which
        // takes seconds per request under load, so the timeout is generous.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(concurrency.max(1) * 2)
            .build()?;
        Ok(Self {
            http,
            command_url: command_url.into(),
            tally: Arc::default(),
            throttles: Arc::default(),
            accepted_commands: Arc::default(),
            session_renewals: Arc::default(),
            progress,
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends the request that `build` makes until it is not rate-limited; returns the
    /// reply if it succeeded or matched `expected`, and counts it either way.
    pub async fn send(
        &self,
        endpoint: Endpoint,
        expected: &[Expected],
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Reply, RequestFailed> {
        loop {
            let throttle = self.throttle(endpoint);
            let mut turn = match &throttle {
                Some(throttle) => Some(throttle.lock().await),
                None => None,
            };
            if let Some(not_before) = turn.as_deref() {
                tokio::time::sleep_until((*not_before).into()).await;
            }

            let started = Instant::now();
            let outcome = exchange(build()).await;
            let elapsed = started.elapsed();
            let (status, retry_after, bytes) = match outcome {
                Ok(parts) => parts,
                Err(error) => {
                    self.record_transport_error(endpoint, &error, elapsed);
                    return Err(RequestFailed);
                }
            };

            if status == StatusCode::TOO_MANY_REQUESTS {
                let wait = retry_after
                    .unwrap_or(Duration::from_secs(1))
                    .min(MAX_RETRY_AFTER)
                    + RETRY_MARGIN;
                match turn.as_deref_mut() {
                    Some(not_before) => *not_before = Instant::now() + wait,
                    None => self.start_throttle(endpoint, Instant::now() + wait),
                }
                drop(turn);
                self.count_rate_limited(endpoint);
                continue;
            }
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let reply = Reply {
                status,
                bytes,
                body,
            };
            return self.record_reply(endpoint, expected, reply, elapsed);
        }
    }

    /// Like [`Client::send`] with the session's bearer token. A 401 means the session
    /// expired (idle timeout) while the seeder was busy elsewhere: the account logs in
    /// again and the request is sent once more.
    pub async fn send_as(
        &self,
        session: &Session,
        endpoint: Endpoint,
        expected: &[Expected],
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Reply, RequestFailed> {
        let token = session.token();
        let mut with_unauthorized = expected.to_vec();
        with_unauthorized.push(Expected::status(StatusCode::UNAUTHORIZED));
        let reply = self
            .send(endpoint, &with_unauthorized, || build().bearer_auth(&token))
            .await?;
        if reply.status != StatusCode::UNAUTHORIZED {
            return Ok(reply);
        }
        self.uncount_expected(endpoint);
        self.session_renewals.fetch_add(1, Ordering::Relaxed);
        let token = self.login_token(&session.email, &session.password).await?;
        *session.token.lock().expect("token lock") = token.clone();
        self.send(endpoint, expected, || build().bearer_auth(&token))
            .await
    }

    /// Registers an account with [`SEEDED_PASSWORD`]; returns its id.
    pub async fn register(
        &self,
        role: &str,
        email: &str,
        name: &str,
    ) -> Result<String, RequestFailed> {
        let url = format!("{}/accounts", self.command_url);
        let body =
            json!({ "role": role, "email": email, "password": SEEDED_PASSWORD, "name": name });
        let reply = self
            .send(Endpoint::Register, &[], || self.http.post(&url).json(&body))
            .await?;
        reply.json()["aggregate_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or(RequestFailed)
    }

    /// Logs in with `password`; returns the session.
    pub async fn login(&self, email: &str, password: &str) -> Result<Session, RequestFailed> {
        let url = format!("{}/sessions", self.command_url);
        let body = json!({ "email": email, "password": password });
        let reply = self
            .send(Endpoint::Login, &[], || self.http.post(&url).json(&body))
            .await?;
        let session = reply.json();
        let (Some(token), Some(account_id)) =
            (session["token"].as_str(), session["account_id"].as_str())
        else {
            return Err(RequestFailed);
        };
        Ok(Session {
            account_id: account_id.to_owned(),
            email: email.to_owned(),
            password: password.to_owned(),
            token: Mutex::new(token.to_owned()),
        })
    }

    async fn login_token(&self, email: &str, password: &str) -> Result<String, RequestFailed> {
        Ok(self.login(email, password).await?.token())
    }

    fn throttle(&self, endpoint: Endpoint) -> Option<Throttle> {
        let throttles = self.throttles.lock().expect("throttles lock");
        throttles.get(&endpoint).cloned()
    }

    /// Sends the endpoint's later requests one at a time, the first no earlier than
    /// `not_before`. A throttle that another task started first stays as it is.
    fn start_throttle(&self, endpoint: Endpoint, not_before: Instant) {
        let mut throttles = self.throttles.lock().expect("throttles lock");
        throttles
            .entry(endpoint)
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(not_before)));
    }

    fn count_rate_limited(&self, endpoint: Endpoint) {
        {
            let mut tally = self.tally.lock().expect("tally lock");
            let stats = tally
                .endpoints
                .entry(endpoint)
                .or_insert_with(EndpointStats::new);
            stats.requests += 1;
            stats.rate_limited += 1;
        }
        self.progress.note_once(
            "rate-limited",
            "the command API rate-limits logins (429), so logins now go one at a time as \
             its Retry-After allows. Its limit per client address is \
             MEDFLOW_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE (default 30), so seeding takes \
             about a minute per 30 accounts unless the command API runs with a higher limit",
        );
    }

    fn record_transport_error(
        &self,
        endpoint: Endpoint,
        error: &reqwest::Error,
        elapsed: Duration,
    ) {
        let mut tally = self.tally.lock().expect("tally lock");
        let stats = tally
            .endpoints
            .entry(endpoint)
            .or_insert_with(EndpointStats::new);
        stats.requests += 1;
        stats.transport_errors += 1;
        record_latency(stats, elapsed);
        let kind = if error.is_timeout() {
            "timeout"
        } else if error.is_connect() {
            "connection failed"
        } else {
            "no response"
        };
        note_failure(&mut tally, endpoint, None, kind, &error.to_string());
    }

    fn record_reply(
        &self,
        endpoint: Endpoint,
        expected: &[Expected],
        reply: Reply,
        elapsed: Duration,
    ) -> Result<Reply, RequestFailed> {
        let mut tally = self.tally.lock().expect("tally lock");
        let tally = &mut *tally;
        let stats = tally
            .endpoints
            .entry(endpoint)
            .or_insert_with(EndpointStats::new);
        stats.requests += 1;
        record_latency(stats, elapsed);

        if reply.status.is_success() {
            stats.succeeded += 1;
            count_events(tally, endpoint, reply.json(), &self.accepted_commands);
            return Ok(reply);
        }
        if expected.iter().any(|expected| expected.matches(&reply)) {
            stats.expected += 1;
            return Ok(reply);
        }

        if reply.status.is_server_error() {
            stats.server_errors += 1;
        } else {
            stats.client_errors += 1;
        }
        let detail = reply.json()["detail"].as_str().unwrap_or("").to_owned();
        let problem = reply.problem_type().to_owned();
        note_failure(
            tally,
            endpoint,
            Some(reply.status.as_u16()),
            &problem,
            &detail,
        );
        Err(RequestFailed)
    }

    /// Takes back an expected 401 that [`Client::send_as`] turned into a session renewal.
    fn uncount_expected(&self, endpoint: Endpoint) {
        let mut tally = self.tally.lock().expect("tally lock");
        if let Some(stats) = tally.endpoints.get_mut(&endpoint) {
            stats.expected = stats.expected.saturating_sub(1);
        }
    }

    /// Commands the platform accepted: success responses that carry an event sequence.
    pub fn accepted_commands(&self) -> u64 {
        self.accepted_commands.load(Ordering::Relaxed)
    }

    /// Events that the accepted commands appended, from the advance of each aggregate's
    /// sequence between the responses this client saw.
    pub fn events_written(&self) -> u64 {
        self.tally.lock().expect("tally lock").events
    }

    /// Logins repeated because a session had expired.
    pub fn session_renewals(&self) -> u64 {
        self.session_renewals.load(Ordering::Relaxed)
    }

    pub fn endpoint_summaries(&self) -> Vec<EndpointSummary> {
        let tally = self.tally.lock().expect("tally lock");
        tally
            .endpoints
            .iter()
            .map(|(endpoint, stats)| {
                let micros = |value: u64| Duration::from_micros(value);
                let histogram = &stats.latency_micros;
                EndpointSummary {
                    endpoint: *endpoint,
                    requests: stats.requests,
                    succeeded: stats.succeeded,
                    expected: stats.expected,
                    server_errors: stats.server_errors,
                    client_errors: stats.client_errors,
                    transport_errors: stats.transport_errors,
                    rate_limited: stats.rate_limited,
                    p50: micros(histogram.value_at_quantile(0.50)),
                    p99: micros(histogram.value_at_quantile(0.99)),
                    max: micros(histogram.max()),
                }
            })
            .collect()
    }

    pub fn failure_samples(&self) -> Vec<FailureSample> {
        let tally = self.tally.lock().expect("tally lock");
        tally.failures.values().cloned().collect()
    }
}

/// Sends a request and reads the whole body; returns the status, the Retry-After delay
/// and the body.
async fn exchange(
    request: RequestBuilder,
) -> Result<(StatusCode, Option<Duration>, Vec<u8>), reqwest::Error> {
    let response = request.send().await?;
    let status = response.status();
    let retry_after = retry_after(&response);
    let bytes = response.bytes().await?;
    Ok((status, retry_after, bytes.to_vec()))
}

fn record_latency(stats: &mut EndpointStats, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    stats.latency_micros.saturating_record(micros.max(1));
}

fn note_failure(
    tally: &mut Tally,
    endpoint: Endpoint,
    status: Option<u16>,
    problem_type: &str,
    detail: &str,
) {
    let key = (endpoint, status, problem_type.to_owned());
    tally
        .failures
        .entry(key)
        .or_insert_with(|| FailureSample {
            endpoint,
            status,
            problem_type: problem_type.to_owned(),
            count: 0,
            first_detail: detail.chars().take(160).collect(),
        })
        .count += 1;
}

/// Adds the events a successful command appended, from the aggregate's sequence.
fn count_events(tally: &mut Tally, endpoint: Endpoint, body: &Value, accepted: &AtomicU64) {
    let Some(sequence) = body["sequence"].as_u64() else {
        return;
    };
    accepted.fetch_add(1, Ordering::Relaxed);
    let Some(aggregate_id) = body["aggregate_id"].as_str() else {
        return;
    };
    let key = (endpoint.aggregate_type(), aggregate_id.to_owned());
    let previous = tally.sequences.get(&key).copied().unwrap_or(0);
    if sequence > previous {
        tally.events += sequence - previous;
        tally.sequences.insert(key, sequence);
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}
