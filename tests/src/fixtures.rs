//! Shortcuts for tests that need verified doctors and many signed-in patients. Doctor
//! profiles are written through the command bus with real sealing. Sessions are created
//! in the session store directly, which skips the deliberately slow password hashing of
//! registration and login; those flows have their own tests.

use std::time::Duration;

use medflow_domain::availability::{DoctorTimeZone, RawWindow, WeeklyAvailability};
use medflow_domain::doctor::{
    DoctorCommand, DoctorProfile, Language, LicenseDocument, ProfileDetails, Specialty,
};
use medflow_domain::values::{AccountId, Role};
use medflow_infra::clock;
use medflow_infra::crypto::index::BlindIndex;
use medflow_infra::crypto::keys::{KeyRing, MasterKeys};
use medflow_infra::event_store::{CommandBus, EventMetadata};
use medflow_infra::sessions::{SessionPolicy, SessionStore};
use secrecy::SecretString;
use uuid::Uuid;

use crate::TestEnv;

pub struct Fixtures {
    doctors: CommandBus<DoctorProfile>,
    keys: KeyRing,
    index: BlindIndex,
    sessions: SessionStore,
}

/// Weekly windows `(weekday, start, end)` on all seven days.
pub fn every_day(start: &str, end: &str) -> Vec<RawWindow> {
    medflow_domain::availability::WEEKDAY_NAMES
        .iter()
        .map(|day| RawWindow::new(day, start, end))
        .collect()
}

fn metadata() -> EventMetadata {
    EventMetadata {
        actor_id: None,
        actor_role: None,
        request_id: "test-fixture".into(),
        session_id: None,
    }
}

impl Fixtures {
    pub async fn new(env: &TestEnv) -> Self {
        Self::with_clock(env, clock::system_clock()).await
    }

    /// Creates sessions on `clock`, which must be the clock of the APIs they are used
    /// with, or the APIs see them as expired or not yet started.
    pub async fn with_clock(env: &TestEnv, clock: clock::SharedClock) -> Self {
        let url = SecretString::from(env.app_url());
        let pool = medflow_infra::db::pg_pool(&url, 8).unwrap();
        let masters = MasterKeys::parse(&SecretString::from(env.master_keys.clone())).unwrap();
        let policy = SessionPolicy {
            idle_timeout: Duration::from_secs(1800),
            absolute_lifetime: Duration::from_secs(12 * 3600),
        };
        Self {
            doctors: CommandBus::new(medflow_infra::db::sqlx_pool(&url, 4).await.unwrap(), ()),
            keys: KeyRing::new(pool.clone(), masters),
            index: BlindIndex::from_base64(&SecretString::from(env.index_key.clone())).unwrap(),
            sessions: SessionStore::new(pool, policy, clock),
        }
    }

    /// Returns a bearer token of a new session for `account` in `role`.
    pub async fn session(&self, account: AccountId, role: Role) -> String {
        self.sessions.create(account, role).await.unwrap().token
    }

    /// Returns a new patient id with a session token.
    pub async fn patient(&self) -> (AccountId, String) {
        let patient = AccountId(Uuid::new_v4());
        (patient, self.session(patient, Role::Patient).await)
    }

    /// Runs a command on a doctor profile; returns the committed sequence.
    pub async fn run_doctor(&self, doctor: AccountId, command: DoctorCommand) -> u64 {
        self.doctors
            .execute(&doctor.to_string(), command, metadata())
            .await
            .unwrap()
            .sequence as u64
    }

    /// Profile details for a cardiologist named `name` working in `zone`.
    pub async fn details(&self, doctor: AccountId, name: &str, zone: &str) -> ProfileDetails {
        let seal = |field: &'static str, text: String| async move {
            self.keys
                .seal(doctor.0, field, text.as_bytes())
                .await
                .unwrap()
        };
        ProfileDetails {
            display_name: seal("doctor_display_name", name.to_owned()).await,
            name_tokens: self.index.name_tokens(name),
            specialty: Specialty::parse("specialty", "cardiology").unwrap(),
            license_number: seal("license_number", format!("LIC-{}", doctor.0.simple())).await,
            license_fingerprint: self.index.license_fingerprint(&doctor.0.to_string()),
            issuing_authority: "Medical Council".into(),
            biography: seal("biography", format!("{name} sees patients online.")).await,
            time_zone: DoctorTimeZone::parse("time_zone", zone).unwrap(),
            languages: vec![Language::parse("languages", "en").unwrap()],
        }
    }

    /// Creates a verified doctor in `zone` with `windows`; returns the id, a doctor
    /// session token and the profile's last sequence.
    pub async fn verified_doctor(
        &self,
        zone: &str,
        windows: &[RawWindow],
    ) -> (AccountId, String, u64) {
        let doctor = AccountId(Uuid::new_v4());
        let details = self.details(doctor, "Dana Heart", zone).await;
        self.run_doctor(doctor, DoctorCommand::UpdateProfile { doctor, details })
            .await;
        let weekly = WeeklyAvailability::parse("windows", windows).unwrap();
        self.run_doctor(doctor, DoctorCommand::SetWeeklyAvailability { weekly })
            .await;
        let document = LicenseDocument {
            document_id: Uuid::new_v4(),
            object_key: format!("licenses/{doctor}/fixture"),
            content_type: "application/pdf".into(),
            size: 10,
        };
        self.run_doctor(doctor, DoctorCommand::AttachLicenseDocument { document })
            .await;
        self.run_doctor(doctor, DoctorCommand::SubmitForVerification)
            .await;
        let admin = AccountId(Uuid::from_u128(1));
        let sequence = self
            .run_doctor(doctor, DoctorCommand::Approve { by: admin })
            .await;
        let token = self.session(doctor, Role::Doctor).await;
        (doctor, token, sequence)
    }

    /// Suspends a doctor as an admin would; returns the sequence.
    pub async fn suspend(&self, doctor: AccountId) -> u64 {
        let reason = self
            .keys
            .seal(doctor.0, "doctor_suspension_reason", b"complaint")
            .await
            .unwrap();
        let admin = AccountId(Uuid::from_u128(1));
        self.run_doctor(doctor, DoctorCommand::Suspend { reason, by: admin })
            .await
    }
}
