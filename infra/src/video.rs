//! LiveKit video consultations: access tokens for an appointment's room, and verification
//! of the webhooks a LiveKit server sends about that room.
//!
//! Every appointment has one room, named after the appointment id only, so a room name
//! reveals nothing about the people in it. A token identifies its holder by role
//! (`patient` or `doctor`), never by name, because LiveKit sends each identity to the
//! other participants in the room and includes it in webhooks.
//!
//! Claims, grants and token verification come from LiveKit's `livekit-api` crate
//! (`access_token` module). Tokens are signed with `jsonwebtoken` directly, because
//! `AccessToken` in livekit-token 0.4 computes `nbf` and `exp` from the system clock, and
//! a video token must end exactly at the end of the join window the caller computed.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use clap::Args;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use livekit_api::access_token::{
    AccessTokenError, AgentEndpointGrants, AgentGrants, AgentThreadGrants, Claims, InferenceGrants,
    ObservabilityGrants, SIPGrants, TokenVerifier, VideoGrants,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Minimum length of the API secret. RFC 7518 section 3.2 requires an HS256 key of at
/// least 256 bits, and 32 characters are at least 32 bytes.
pub const MIN_API_SECRET_LENGTH: usize = 32;

/// Prefix of every appointment room name, followed by the appointment id.
const ROOM_PREFIX: &str = "appointment-";

/// Track sources a consultation participant may publish. LiveKit treats an empty list as
/// "every source", which would include screen sharing.
const PUBLISH_SOURCES: [&str; 2] = ["camera", "microphone"];

#[derive(Debug, Clone, Args)]
pub struct LiveKitSettings {
    /// URL of the LiveKit server that clients connect to (`ws://` or `wss://`). It is
    /// returned to clients with each video token.
    #[arg(
        id = "livekit_url",
        long = "livekit-url",
        env = "MEDFLOW_LIVEKIT_URL",
        default_value = "ws://127.0.0.1:7880"
    )]
    pub url: String,

    /// LiveKit API key. It is the issuer of video tokens, and webhooks must name it as
    /// their issuer.
    #[arg(long = "livekit-api-key", env = "MEDFLOW_LIVEKIT_API_KEY")]
    pub api_key: String,

    /// Secret of the API key, at least 32 characters. It signs video tokens and verifies
    /// webhooks. `SecretString` keeps it out of logs, and clap hides its value in help.
    #[arg(
        long = "livekit-api-secret",
        env = "MEDFLOW_LIVEKIT_API_SECRET",
        hide_env_values = true
    )]
    pub api_secret: SecretString,
}

impl LiveKitSettings {
    /// Checks what clap cannot: the URL scheme, a usable API key and the secret's length.
    /// Errors name the variable and never contain the secret.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
            anyhow::bail!(
                "invalid MEDFLOW_LIVEKIT_URL '{}': expected a ws:// or wss:// URL such as ws://127.0.0.1:7880",
                self.url
            );
        }
        if self.api_key.is_empty() {
            anyhow::bail!(
                "MEDFLOW_LIVEKIT_API_KEY is empty. Set it to the LiveKit server's API key."
            );
        }
        if self
            .api_key
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            anyhow::bail!(
                "invalid MEDFLOW_LIVEKIT_API_KEY: it contains whitespace or control characters"
            );
        }
        if self.api_secret.expose_secret().chars().count() < MIN_API_SECRET_LENGTH {
            anyhow::bail!(
                "MEDFLOW_LIVEKIT_API_SECRET is too short: at least {MIN_API_SECRET_LENGTH} characters are required \
                 (`medflow stack up` generates one into .stack/secrets.env)"
            );
        }
        Ok(())
    }
}

/// Role of a consultation participant. It is also the participant's LiveKit identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Participant {
    Patient,
    Doctor,
}

impl Participant {
    /// LiveKit identity and display name of this participant: `patient` or `doctor`.
    pub fn identity(self) -> &'static str {
        match self {
            Participant::Patient => "patient",
            Participant::Doctor => "doctor",
        }
    }

    /// Parses an identity written by [`Participant::identity`]. Other identities give `None`.
    pub fn from_identity(identity: &str) -> Option<Self> {
        match identity {
            "patient" => Some(Participant::Patient),
            "doctor" => Some(Participant::Doctor),
            _ => None,
        }
    }
}

/// A signed LiveKit access token and what a client needs to join with it.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct VideoToken {
    /// LiveKit access token (a JWT), passed to the LiveKit client SDK together with `url`.
    pub token: String,
    pub room: String,
    /// URL of the LiveKit server.
    pub url: String,
    /// LiveKit identity inside the room: `patient` or `doctor`.
    pub identity: String,
    /// The token's `exp` claim. It is the requested expiry truncated to whole seconds.
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for VideoToken {
    /// Leaves the token out, because it is a bearer credential.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VideoToken")
            .field("token", &"[redacted]")
            .field("room", &self.room)
            .field("url", &self.url)
            .field("identity", &self.identity)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VideoTokenError {
    #[error("invalid video token lifetime: expiry {expires_at} is not at least one whole second after {now}")]
    ExpiryNotAfterNow {
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    #[error("time {0} cannot be written as a JWT timestamp")]
    TimeOutOfRange(DateTime<Utc>),
    #[error("failed to sign the video token: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// Issues LiveKit access tokens for appointment rooms.
#[derive(Clone)]
pub struct VideoTokenIssuer {
    api_key: String,
    signing_key: EncodingKey,
    url: String,
}

impl fmt::Debug for VideoTokenIssuer {
    /// Leaves the signing key out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VideoTokenIssuer")
            .field("api_key", &self.api_key)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl VideoTokenIssuer {
    /// Validates the settings (see [`LiveKitSettings::validate`]) and builds the issuer.
    pub fn new(settings: &LiveKitSettings) -> anyhow::Result<Self> {
        settings.validate()?;
        Ok(Self {
            api_key: settings.api_key.clone(),
            signing_key: EncodingKey::from_secret(settings.api_secret.expose_secret().as_bytes()),
            url: settings.url.clone(),
        })
    }

    /// Name of the appointment's room: `appointment-<id>`, with the id in lowercase
    /// hyphenated form.
    pub fn room_name(appointment_id: Uuid) -> String {
        format!("{ROOM_PREFIX}{}", appointment_id.hyphenated())
    }

    /// Returns the appointment whose room is `room`, or `None` for a name that
    /// [`VideoTokenIssuer::room_name`] does not produce.
    pub fn appointment_of_room(room: &str) -> Option<Uuid> {
        let id = Uuid::try_parse(room.strip_prefix(ROOM_PREFIX)?).ok()?;
        // `try_parse` also accepts braced, URN and unhyphenated forms, but only the form
        // that `room_name` writes identifies a room.
        (Self::room_name(id) == room).then_some(id)
    }

    /// Signs a token that lets `participant` join the appointment's room from `now`
    /// (`nbf`) until `expires_at` (`exp`), both truncated to whole seconds, so the
    /// token never outlives `expires_at`. Fails unless `exp` ends up after `nbf`.
    ///
    /// The token grants joining this one room, publishing camera and microphone,
    /// subscribing and sending data messages, and nothing else. Every grant is written
    /// out below without `..Default::default()`, so a grant added by a later
    /// livekit-token version fails to compile here instead of silently taking a default.
    pub fn issue(
        &self,
        appointment_id: Uuid,
        participant: Participant,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<VideoToken, VideoTokenError> {
        let not_before = jwt_seconds(now)?;
        let expiry = jwt_seconds(expires_at)?;
        if expiry <= not_before {
            return Err(VideoTokenError::ExpiryNotAfterNow { now, expires_at });
        }

        let room = Self::room_name(appointment_id);
        let identity = participant.identity();
        let video = VideoGrants {
            room_create: false,
            room_list: false,
            room_record: false,
            room_admin: false,
            room_join: true,
            room: room.clone(),
            destination_room: String::new(),
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_data: Some(true),
            can_publish_sources: PUBLISH_SOURCES.map(str::to_owned).to_vec(),
            can_update_own_metadata: Some(false),
            ingress_admin: false,
            hidden: false,
            recorder: false,
            agent: false,
        };
        let claims = Claims {
            exp: expiry,
            iss: self.api_key.clone(),
            nbf: not_before,
            sub: identity.to_owned(),
            name: identity.to_owned(),
            kind: String::new(),
            video,
            sip: SIPGrants::default(),
            agent: AgentGrants::default(),
            agent_endpoint: AgentEndpointGrants::default(),
            agent_thread: AgentThreadGrants::default(),
            inference: InferenceGrants::default(),
            observability: ObservabilityGrants::default(),
            sha256: String::new(),
            metadata: String::new(),
            attributes: Default::default(),
            room_config: None,
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.signing_key)?;

        Ok(VideoToken {
            token,
            room,
            url: self.url.clone(),
            identity: identity.to_owned(),
            expires_at: DateTime::from_timestamp(expiry as i64, 0)
                .ok_or(VideoTokenError::TimeOutOfRange(expires_at))?,
        })
    }
}

/// Whole seconds since the Unix epoch, rounded down, as livekit-token's `Claims` stores them.
fn jwt_seconds(time: DateTime<Utc>) -> Result<usize, VideoTokenError> {
    usize::try_from(time.timestamp()).map_err(|_| VideoTokenError::TimeOutOfRange(time))
}

/// A verified LiveKit webhook: the fields MedFlow uses, taken from the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookNotice {
    /// LiveKit's unique id of the event (`id`).
    pub event_id: String,
    pub kind: WebhookKind,
    /// `room.name`, when the event concerns a room.
    pub room: Option<String>,
    /// The appointment whose room this is, or `None` for rooms MedFlow did not name.
    pub appointment_id: Option<Uuid>,
    /// Role parsed from `participant.identity`. It is `None` when the event names no
    /// participant or an identity MedFlow does not issue.
    pub participant: Option<Participant>,
    /// `createdAt`, when present.
    pub created_at: Option<DateTime<Utc>>,
}

/// Webhook event names that MedFlow acts on. Other events keep their name in `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookKind {
    RoomStarted,
    RoomFinished,
    ParticipantJoined,
    ParticipantLeft,
    Other(String),
}

impl WebhookKind {
    fn from_event_name(name: &str) -> Self {
        match name {
            "room_started" => WebhookKind::RoomStarted,
            "room_finished" => WebhookKind::RoomFinished,
            "participant_joined" => WebhookKind::ParticipantJoined,
            "participant_left" => WebhookKind::ParticipantLeft,
            other => WebhookKind::Other(other.to_owned()),
        }
    }
}

/// Reason a webhook was rejected. Messages never contain the secret, the token or body
/// content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRejection {
    #[error("missing Authorization header")]
    MissingAuthorization,
    /// The Authorization token failed verification because it is malformed, uses another
    /// algorithm than HS256, has a wrong signature or issuer, is expired or not yet valid.
    #[error("invalid webhook signature: {0}")]
    InvalidSignature(&'static str),
    /// The token's `sha256` claim is missing or differs from the SHA-256 of the body.
    #[error("webhook body does not match the sha256 claim of its Authorization token")]
    BodyHashMismatch,
    #[error("malformed webhook body: {0}")]
    MalformedBody(String),
}

/// Verifies LiveKit webhooks the way LiveKit's server SDKs do. The `Authorization` header
/// contains an HS256 JWT signed with the API secret, whose issuer is the API key and whose
/// `sha256` claim is the base64 SHA-256 of the raw body.
#[derive(Debug, Clone)]
pub struct WebhookVerifier {
    verifier: TokenVerifier,
}

impl WebhookVerifier {
    /// Builds a verifier for webhooks signed with the settings' key and secret. Unlike
    /// [`VideoTokenIssuer::new`] it does not validate the settings, so call
    /// [`LiveKitSettings::validate`] at startup.
    pub fn new(settings: &LiveKitSettings) -> Self {
        Self {
            verifier: TokenVerifier::with_api_key(
                &settings.api_key,
                settings.api_secret.expose_secret(),
            ),
        }
    }

    /// Verifies the `Authorization` header value against `body`, then parses the body.
    ///
    /// The header may contain the bare JWT, as LiveKit sends it, or `Bearer <jwt>`. The
    /// token is checked before the body is parsed. `exp` and `nbf` are checked with the
    /// 60 s leeway that livekit-token 0.4 inherits from jsonwebtoken's defaults, so a
    /// token is accepted up to a minute after it expires.
    ///
    /// LiveKit's `WebhookReceiver` is not used, because it decodes the whole protobuf
    /// event and rejects an authentic webhook whose enum values are newer than
    /// livekit-protocol 0.8. Only the fields in [`WebhookNotice`] are read here.
    ///
    /// NOTE: a captured webhook verifies again until its token expires (LiveKit signs
    /// webhooks for 5 minutes), so callers must ignore an `event_id` they already handled.
    pub fn verify(
        &self,
        body: &[u8],
        authorization: Option<&str>,
    ) -> Result<WebhookNotice, WebhookRejection> {
        let token = authorization
            .map(bearer_token)
            .filter(|token| !token.is_empty())
            .ok_or(WebhookRejection::MissingAuthorization)?;
        let claims = self
            .verifier
            .verify(token)
            .map_err(|error| WebhookRejection::InvalidSignature(token_problem(&error)))?;

        let claimed_hash = STANDARD
            .decode(claims.sha256.as_bytes())
            .map_err(|_| WebhookRejection::BodyHashMismatch)?;
        if claimed_hash.as_slice() != Sha256::digest(body).as_slice() {
            return Err(WebhookRejection::BodyHashMismatch);
        }

        parse_notice(body)
    }
}

/// Strips an optional `Bearer` scheme (any letter case) and surrounding whitespace.
fn bearer_token(header: &str) -> &str {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim()
    } else {
        header
    }
}

/// Describes why livekit-token rejected a token, without echoing any part of it.
fn token_problem(error: &AccessTokenError) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;

    // livekit-token 0.4 wraps decoding errors in its `Encoding` variant.
    let AccessTokenError::Encoding(error) = error else {
        return "token verification failed";
    };
    match error.kind() {
        ErrorKind::InvalidSignature => "signature does not match the API secret",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "token is not signed with HS256"
        }
        ErrorKind::InvalidIssuer => "token issuer is not the configured API key",
        ErrorKind::ExpiredSignature => "token has expired",
        ErrorKind::ImmatureSignature => "token is not valid yet",
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
        ErrorKind::InvalidClaimFormat(_) => "token has a claim of the wrong type",
        _ => "malformed token",
    }
}

/// The parts of LiveKit's `WebhookEvent` JSON that MedFlow reads. Unknown fields are
/// ignored, so newer LiveKit servers can add fields and enum values.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookBody {
    #[serde(default)]
    id: String,
    #[serde(default)]
    event: String,
    room: Option<NamedRoom>,
    participant: Option<ParticipantIdentity>,
    #[serde(default, alias = "created_at", deserialize_with = "unix_seconds")]
    created_at: Option<i64>,
}

#[derive(Deserialize)]
struct NamedRoom {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct ParticipantIdentity {
    #[serde(default)]
    identity: String,
}

/// Reads an int64 that protobuf's JSON mapping writes as a string (`"1700000000"`) and
/// other encoders write as a number.
fn unix_seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Number(i64),
        Text(String),
    }

    match Option::<Seconds>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Seconds::Number(seconds)) => Ok(Some(seconds)),
        Some(Seconds::Text(text)) => text
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom("createdAt is not a whole number of seconds")),
    }
}

fn parse_notice(body: &[u8]) -> Result<WebhookNotice, WebhookRejection> {
    let body: WebhookBody = serde_json::from_slice(body).map_err(|error| {
        // serde_json's messages may quote body content, so only the position is kept.
        WebhookRejection::MalformedBody(format!(
            "not a webhook event object (JSON error at line {} column {})",
            error.line(),
            error.column()
        ))
    })?;
    if body.id.is_empty() {
        return Err(WebhookRejection::MalformedBody(
            "missing event id".to_owned(),
        ));
    }
    if body.event.is_empty() {
        return Err(WebhookRejection::MalformedBody(
            "missing event name".to_owned(),
        ));
    }
    let created_at = match body.created_at {
        // protobuf's JSON mapping omits an int64 that is 0, so 0 counts as absent.
        None | Some(0) => None,
        Some(seconds) => Some(DateTime::from_timestamp(seconds, 0).ok_or_else(|| {
            WebhookRejection::MalformedBody("createdAt is out of range".to_owned())
        })?),
    };

    let room = body
        .room
        .map(|room| room.name)
        .filter(|name| !name.is_empty());
    let appointment_id = room
        .as_deref()
        .and_then(VideoTokenIssuer::appointment_of_room);
    let participant = body
        .participant
        .and_then(|participant| Participant::from_identity(&participant.identity));

    Ok(WebhookNotice {
        event_id: body.id,
        kind: WebhookKind::from_event_name(&body.event),
        room,
        appointment_id,
        participant,
        created_at,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use chrono::TimeZone;
    use jsonwebtoken::{DecodingKey, Validation};
    use livekit_api::access_token::AccessToken;

    use super::*;

    const API_KEY: &str = "APItestkey";
    const API_SECRET: &str = "test-secret-0123456789abcdefghijklmnopqrstuvwxyz";

    fn settings() -> LiveKitSettings {
        LiveKitSettings {
            url: "ws://127.0.0.1:7880".to_owned(),
            api_key: API_KEY.to_owned(),
            api_secret: SecretString::from(API_SECRET),
        }
    }

    fn issuer() -> VideoTokenIssuer {
        VideoTokenIssuer::new(&settings()).unwrap()
    }

    fn verifier() -> WebhookVerifier {
        WebhookVerifier::new(&settings())
    }

    /// Decodes a token signed with the test secret, checking the signature but not the
    /// time claims, so tokens issued for fixed past dates can be read.
    fn decode_payload(token: &str) -> serde_json::Value {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<serde_json::Value>(
            token,
            &DecodingKey::from_secret(API_SECRET.as_bytes()),
            &validation,
        )
        .unwrap()
        .claims
    }

    fn body_hash(body: &[u8]) -> String {
        STANDARD.encode(Sha256::digest(body))
    }

    /// Signs `body` the way a LiveKit server does: an `AccessToken` valid for 5 minutes
    /// whose `sha256` claim is the base64 SHA-256 of the body.
    fn sign_webhook(body: &[u8], api_key: &str, api_secret: &str) -> String {
        AccessToken::with_api_key(api_key, api_secret)
            .with_ttl(Duration::from_secs(300))
            .with_sha256(&body_hash(body))
            .to_jwt()
            .unwrap()
    }

    fn sign_claims(claims: &Claims, algorithm: Algorithm, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(algorithm),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn webhook_claims(body: &[u8], nbf: i64, exp: i64) -> Claims {
        Claims {
            exp: exp as usize,
            iss: API_KEY.to_owned(),
            nbf: nbf as usize,
            sha256: body_hash(body),
            ..Claims::default()
        }
    }

    fn sample_body(appointment_id: Uuid) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "event": "participant_joined",
            "id": "EV_abc123",
            "createdAt": "1767225600",
            "room": {"sid": "RM_xyz", "name": VideoTokenIssuer::room_name(appointment_id)},
            "participant": {"sid": "PA_xyz", "identity": "doctor", "state": "SOME_FUTURE_STATE"},
        }))
        .unwrap()
    }

    #[test]
    fn room_name_round_trips() {
        let id = Uuid::new_v4();

        let room = VideoTokenIssuer::room_name(id);

        assert_eq!(room, format!("appointment-{id}"));
        assert_eq!(VideoTokenIssuer::appointment_of_room(&room), Some(id));
    }

    #[test]
    fn appointment_of_room_rejects_other_names() {
        let id = Uuid::new_v4();
        let names = [
            String::new(),
            "appointment-".to_owned(),
            "lobby".to_owned(),
            id.to_string(),
            format!("appointment-{}", id.simple()),
            format!("appointment-{}", id.braced()),
            format!("appointment-{}", id.to_string().to_uppercase()),
            format!("appointment-{id}-x"),
            format!("Appointment-{id}"),
        ];

        for name in names {
            assert_eq!(VideoTokenIssuer::appointment_of_room(&name), None, "{name}");
        }
    }

    #[test]
    fn settings_reject_short_secret() {
        let short = LiveKitSettings {
            api_secret: SecretString::from("x".repeat(MIN_API_SECRET_LENGTH - 1)),
            ..settings()
        };

        let message = VideoTokenIssuer::new(&short).unwrap_err().to_string();

        assert!(message.contains("MEDFLOW_LIVEKIT_API_SECRET"), "{message}");
        assert!(message.contains("at least 32 characters"), "{message}");
        assert!(!message.contains("xxxxxxxx"), "{message}");
    }

    #[test]
    fn settings_accept_secret_of_minimum_length() {
        let minimum = LiveKitSettings {
            api_secret: SecretString::from("x".repeat(MIN_API_SECRET_LENGTH)),
            ..settings()
        };

        assert!(VideoTokenIssuer::new(&minimum).is_ok());
    }

    #[test]
    fn settings_reject_bad_url_and_key() {
        let http_url = LiveKitSettings {
            url: "127.0.0.1:7880".to_owned(),
            ..settings()
        };
        let empty_key = LiveKitSettings {
            api_key: String::new(),
            ..settings()
        };
        let spaced_key = LiveKitSettings {
            api_key: "API key".to_owned(),
            ..settings()
        };

        let url_message = http_url.validate().unwrap_err().to_string();
        let empty_message = empty_key.validate().unwrap_err().to_string();
        let spaced_message = spaced_key.validate().unwrap_err().to_string();

        assert!(url_message.contains("MEDFLOW_LIVEKIT_URL"), "{url_message}");
        assert!(
            empty_message.contains("MEDFLOW_LIVEKIT_API_KEY"),
            "{empty_message}"
        );
        assert!(
            spaced_message.contains("MEDFLOW_LIVEKIT_API_KEY"),
            "{spaced_message}"
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let now = Utc::now();
        let token = issuer()
            .issue(
                Uuid::new_v4(),
                Participant::Patient,
                now,
                now + chrono::Duration::minutes(5),
            )
            .unwrap();

        let outputs = [
            format!("{:?}", settings()),
            format!("{:?}", issuer()),
            format!("{:?}", verifier()),
            format!("{token:?}"),
        ];

        for output in outputs {
            assert!(!output.contains(API_SECRET), "{output}");
            assert!(!output.contains(&token.token), "{output}");
        }
    }

    #[test]
    fn token_sets_every_grant() {
        let id = Uuid::new_v4();
        let now = Utc::now();

        let token = issuer()
            .issue(
                id,
                Participant::Doctor,
                now,
                now + chrono::Duration::minutes(30),
            )
            .unwrap();
        let claims = TokenVerifier::with_api_key(API_KEY, API_SECRET)
            .verify(&token.token)
            .unwrap();

        let expected = VideoGrants {
            room_create: false,
            room_list: false,
            room_record: false,
            room_admin: false,
            room_join: true,
            room: VideoTokenIssuer::room_name(id),
            destination_room: String::new(),
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_data: Some(true),
            can_publish_sources: vec!["camera".to_owned(), "microphone".to_owned()],
            can_update_own_metadata: Some(false),
            ingress_admin: false,
            hidden: false,
            recorder: false,
            agent: false,
        };
        assert_eq!(claims.video, expected);
        assert_eq!(claims.iss, API_KEY);
        assert_eq!(claims.sub, "doctor");
        assert_eq!(claims.name, "doctor");
        assert_eq!(claims.metadata, "");
        assert!(claims.attributes.is_empty());
        assert_eq!(claims.sip, SIPGrants::default());
        assert_eq!(claims.agent, AgentGrants::default());
        assert_eq!(claims.room_config, None);
    }

    #[test]
    fn token_payload_has_no_other_claims() {
        let now = Utc::now();

        let token = issuer()
            .issue(
                Uuid::new_v4(),
                Participant::Patient,
                now,
                now + chrono::Duration::minutes(30),
            )
            .unwrap();
        let payload = decode_payload(&token.token);

        let mut keys: Vec<&str> = payload
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["exp", "iss", "name", "nbf", "sub", "video"]);
        let mut video_keys: Vec<&str> = payload["video"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        video_keys.sort_unstable();
        assert_eq!(
            video_keys,
            [
                "canPublish",
                "canPublishData",
                "canPublishSources",
                "canSubscribe",
                "canUpdateOwnMetadata",
                "room",
                "roomJoin"
            ]
        );
        assert_eq!(payload["video"]["canUpdateOwnMetadata"], false);
    }

    #[test]
    fn token_identifies_participant_by_role() {
        let id = Uuid::new_v4();
        let now = Utc::now();
        let end = now + chrono::Duration::minutes(30);

        let patient = issuer().issue(id, Participant::Patient, now, end).unwrap();
        let doctor = issuer().issue(id, Participant::Doctor, now, end).unwrap();

        assert_eq!(patient.identity, "patient");
        assert_eq!(doctor.identity, "doctor");
        assert_eq!(patient.room, doctor.room);
        assert_eq!(patient.room, VideoTokenIssuer::room_name(id));
        assert_eq!(patient.url, "ws://127.0.0.1:7880");
        assert_eq!(decode_payload(&patient.token)["sub"], "patient");
        assert_eq!(decode_payload(&doctor.token)["sub"], "doctor");
    }

    #[test]
    fn token_expires_exactly_at_requested_time() {
        let now = Utc.with_ymd_and_hms(2026, 3, 29, 0, 50, 0).unwrap();
        let expires_at = Utc.with_ymd_and_hms(2026, 3, 29, 1, 45, 0).unwrap();

        let token = issuer()
            .issue(Uuid::new_v4(), Participant::Patient, now, expires_at)
            .unwrap();
        let payload = decode_payload(&token.token);

        assert_eq!(payload["exp"], expires_at.timestamp());
        assert_eq!(payload["nbf"], now.timestamp());
        assert_eq!(token.expires_at, expires_at);
    }

    #[test]
    fn token_expiry_rounds_down_to_the_second() {
        let now = Utc.with_ymd_and_hms(2026, 3, 29, 0, 50, 0).unwrap()
            + chrono::Duration::milliseconds(700);
        let whole_second = Utc.with_ymd_and_hms(2026, 3, 29, 1, 45, 0).unwrap();
        let expires_at = whole_second + chrono::Duration::milliseconds(999);

        let token = issuer()
            .issue(Uuid::new_v4(), Participant::Doctor, now, expires_at)
            .unwrap();
        let payload = decode_payload(&token.token);

        assert_eq!(payload["exp"], whole_second.timestamp());
        assert!(payload["nbf"].as_i64().unwrap() <= now.timestamp());
        assert_eq!(token.expires_at, whole_second);
    }

    #[test]
    fn token_rejects_expiry_not_after_now() {
        let now = Utc.with_ymd_and_hms(2026, 3, 29, 0, 50, 0).unwrap();
        let cases = [
            now,
            now - chrono::Duration::seconds(1),
            now + chrono::Duration::milliseconds(999),
        ];

        for expires_at in cases {
            let result = issuer().issue(Uuid::new_v4(), Participant::Patient, now, expires_at);

            assert!(
                matches!(result, Err(VideoTokenError::ExpiryNotAfterNow { .. })),
                "{expires_at}: {result:?}"
            );
        }
    }

    #[test]
    fn token_fails_livekit_verification_once_expired() {
        let now = Utc::now() - chrono::Duration::hours(2);
        let token = issuer()
            .issue(
                Uuid::new_v4(),
                Participant::Patient,
                now,
                now + chrono::Duration::minutes(30),
            )
            .unwrap();

        let result = TokenVerifier::with_api_key(API_KEY, API_SECRET).verify(&token.token);

        assert!(result.is_err());
    }

    #[test]
    fn webhook_signed_like_livekit_is_accepted() {
        let id = Uuid::new_v4();
        let body = sample_body(id);
        let token = sign_webhook(&body, API_KEY, API_SECRET);

        let notice = verifier().verify(&body, Some(&token)).unwrap();

        assert_eq!(notice.event_id, "EV_abc123");
        assert_eq!(notice.kind, WebhookKind::ParticipantJoined);
        assert_eq!(notice.room, Some(VideoTokenIssuer::room_name(id)));
        assert_eq!(notice.appointment_id, Some(id));
        assert_eq!(notice.participant, Some(Participant::Doctor));
        assert_eq!(
            notice.created_at,
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
        );
    }

    #[test]
    fn webhook_accepts_bearer_scheme() {
        let body = sample_body(Uuid::new_v4());
        let token = sign_webhook(&body, API_KEY, API_SECRET);

        for header in [format!("Bearer {token}"), format!("bearer  {token} ")] {
            assert!(verifier().verify(&body, Some(&header)).is_ok(), "{header}");
        }
    }

    #[test]
    fn webhook_rejects_missing_authorization() {
        let body = sample_body(Uuid::new_v4());

        for header in [None, Some(""), Some("   "), Some("Bearer ")] {
            assert_eq!(
                verifier().verify(&body, header),
                Err(WebhookRejection::MissingAuthorization),
                "{header:?}"
            );
        }
    }

    #[test]
    fn webhook_rejects_garbage_authorization() {
        let body = sample_body(Uuid::new_v4());

        for header in ["garbage", "Bearer a.b.c", "Basic dXNlcjpwYXNz", "x.y"] {
            let result = verifier().verify(&body, Some(header));

            assert_eq!(
                result,
                Err(WebhookRejection::InvalidSignature("malformed token")),
                "{header}"
            );
        }
    }

    #[test]
    fn webhook_rejects_wrong_signature() {
        let body = sample_body(Uuid::new_v4());
        let token = sign_webhook(&body, API_KEY, API_SECRET);
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        bytes[0] ^= 1;
        let tampered = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(bytes));

        let result = verifier().verify(&body, Some(&tampered));

        assert_eq!(
            result,
            Err(WebhookRejection::InvalidSignature(
                "signature does not match the API secret"
            ))
        );
    }

    #[test]
    fn webhook_rejects_other_secret() {
        let body = sample_body(Uuid::new_v4());
        let token = sign_webhook(&body, API_KEY, "another-secret-0123456789abcdefghijklmnop");

        let result = verifier().verify(&body, Some(&token));

        assert_eq!(
            result,
            Err(WebhookRejection::InvalidSignature(
                "signature does not match the API secret"
            ))
        );
    }

    #[test]
    fn webhook_rejects_other_api_key() {
        let body = sample_body(Uuid::new_v4());
        let token = sign_webhook(&body, "APIotherkey", API_SECRET);

        let result = verifier().verify(&body, Some(&token));

        assert_eq!(
            result,
            Err(WebhookRejection::InvalidSignature(
                "token issuer is not the configured API key"
            ))
        );
    }

    #[test]
    fn webhook_rejects_alg_none() {
        let body = sample_body(Uuid::new_v4());
        let now = Utc::now().timestamp();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&webhook_claims(&body, now, now + 300)).unwrap());

        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            let result = verifier().verify(&body, Some(&token));

            assert!(
                matches!(result, Err(WebhookRejection::InvalidSignature(_))),
                "{result:?}"
            );
        }
    }

    #[test]
    fn webhook_rejects_other_algorithm() {
        let body = sample_body(Uuid::new_v4());
        let now = Utc::now().timestamp();
        let token = sign_claims(
            &webhook_claims(&body, now, now + 300),
            Algorithm::HS512,
            API_SECRET,
        );

        let result = verifier().verify(&body, Some(&token));

        assert_eq!(
            result,
            Err(WebhookRejection::InvalidSignature(
                "token is not signed with HS256"
            ))
        );
    }

    #[test]
    fn webhook_rejects_expired_token() {
        let body = sample_body(Uuid::new_v4());
        let now = Utc::now().timestamp();
        let token = sign_claims(
            &webhook_claims(&body, now - 600, now - 300),
            Algorithm::HS256,
            API_SECRET,
        );

        let result = verifier().verify(&body, Some(&token));

        assert_eq!(
            result,
            Err(WebhookRejection::InvalidSignature("token has expired"))
        );
    }

    #[test]
    fn webhook_rejects_token_not_valid_yet() {
        let body = sample_body(Uuid::new_v4());
        let now = Utc::now().timestamp();
        let token = sign_claims(
            &webhook_claims(&body, now + 600, now + 900),
            Algorithm::HS256,
            API_SECRET,
        );

        let result = verifier().verify(&body, Some(&token));

        assert_eq!(
            result,
            Err(WebhookRejection::InvalidSignature("token is not valid yet"))
        );
    }

    #[test]
    fn webhook_rejects_tampered_body() {
        let body = sample_body(Uuid::new_v4());
        let token = sign_webhook(&body, API_KEY, API_SECRET);
        let tampered = sample_body(Uuid::new_v4());

        let result = verifier().verify(&tampered, Some(&token));

        assert_eq!(result, Err(WebhookRejection::BodyHashMismatch));
    }

    #[test]
    fn webhook_rejects_token_without_body_hash() {
        let body = sample_body(Uuid::new_v4());
        let now = Utc::now();
        // A participant's video token is signed with the same secret but has no sha256 claim.
        let video_token = issuer()
            .issue(
                Uuid::new_v4(),
                Participant::Doctor,
                now,
                now + chrono::Duration::minutes(5),
            )
            .unwrap();

        let result = verifier().verify(&body, Some(&video_token.token));

        assert_eq!(result, Err(WebhookRejection::BodyHashMismatch));
    }

    #[test]
    fn webhook_rejects_malformed_bodies() {
        let bodies: [&[u8]; 6] = [
            b"not json",
            b"[]",
            br#"{"event":"room_started"}"#,
            br#"{"id":"EV_1"}"#,
            br#"{"id":"EV_1","event":"room_started","createdAt":"soon"}"#,
            br#"{"id":"EV_1","event":"room_started","createdAt":99999999999999999}"#,
        ];

        for body in bodies {
            let token = sign_webhook(body, API_KEY, API_SECRET);

            let result = verifier().verify(body, Some(&token));

            assert!(
                matches!(result, Err(WebhookRejection::MalformedBody(_))),
                "{}: {result:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn malformed_body_message_omits_body_content() {
        let body = br#"{"id":"EV_1","event":"room_started","room":{"name":["secret-content"]}}"#;
        let token = sign_webhook(body, API_KEY, API_SECRET);

        let message = verifier()
            .verify(body, Some(&token))
            .unwrap_err()
            .to_string();

        assert!(!message.contains("secret-content"), "{message}");
    }

    #[test]
    fn rejection_messages_omit_token_and_secret() {
        let body = sample_body(Uuid::new_v4());
        let token = sign_webhook(&body, API_KEY, "another-secret-0123456789abcdefghijklmnop");

        let message = verifier()
            .verify(&body, Some(&token))
            .unwrap_err()
            .to_string();

        assert!(!message.contains(&token), "{message}");
        assert!(!message.contains(API_SECRET), "{message}");
    }

    #[test]
    fn webhook_parses_unmanaged_room_event() {
        let body = br#"{"id":"EV_2","event":"track_published","createdAt":1767225600,"room":{"name":"lobby"},"participant":{"identity":"agent-7"}}"#;
        let token = sign_webhook(body, API_KEY, API_SECRET);

        let notice = verifier().verify(body, Some(&token)).unwrap();

        assert_eq!(
            notice.kind,
            WebhookKind::Other("track_published".to_owned())
        );
        assert_eq!(notice.room.as_deref(), Some("lobby"));
        assert_eq!(notice.appointment_id, None);
        assert_eq!(notice.participant, None);
        assert_eq!(
            notice.created_at,
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
        );
    }

    #[test]
    fn webhook_maps_room_event_names() {
        let cases = [
            ("room_started", WebhookKind::RoomStarted),
            ("room_finished", WebhookKind::RoomFinished),
            ("participant_joined", WebhookKind::ParticipantJoined),
            ("participant_left", WebhookKind::ParticipantLeft),
        ];

        for (name, kind) in cases {
            let body = format!(r#"{{"id":"EV_3","event":"{name}"}}"#);
            let token = sign_webhook(body.as_bytes(), API_KEY, API_SECRET);

            let notice = verifier().verify(body.as_bytes(), Some(&token)).unwrap();

            assert_eq!(notice.kind, kind, "{name}");
            assert_eq!(notice.room, None, "{name}");
            assert_eq!(notice.created_at, None, "{name}");
        }
    }
}
