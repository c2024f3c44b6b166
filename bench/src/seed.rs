//! Seeds verified doctors through the command bus, relay, Kafka and the projectors, in a
//! fresh database of the local stack, and starts a query API on it.

use std::time::Duration;

use medflow_domain::availability::{DoctorTimeZone, RawWindow, WeeklyAvailability};
use medflow_domain::doctor::{
    DoctorCommand, DoctorProfile, Language, LicenseDocument, ProfileDetails, Specialty, SPECIALTIES,
};
use medflow_domain::values::AccountId;
use medflow_infra::crypto::index::BlindIndex;
use medflow_infra::crypto::keys::{KeyRing, MasterKeys};
use medflow_infra::event_store::{CommandBus, EventMetadata};
use medflow_tests::api::{unique_email, Api};
use medflow_tests::TestEnv;
use secrecy::SecretString;
use uuid::Uuid;

pub struct Seeded {
    /// Owns the benchmark's database and services; dropping it removes them.
    pub _env: TestEnv,
    pub api: Api,
    pub token: String,
    pub doctors: Vec<AccountId>,
}

const ZONES: &[&str] = &[
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Sydney",
    "Europe/London",
];

pub async fn seed(count: usize) -> anyhow::Result<Seeded> {
    let env = TestEnv::new().await;
    let api = env.start_spine().await;
    let url = SecretString::from(env.app_url());
    let keys = KeyRing::new(
        medflow_infra::db::pg_pool(&url, 4)?,
        MasterKeys::parse(&SecretString::from(env.master_keys.clone()))
            .map_err(anyhow::Error::msg)?,
    );
    let index = BlindIndex::from_base64(&SecretString::from(env.index_key.clone()))
        .map_err(anyhow::Error::msg)?;
    let bus: CommandBus<DoctorProfile> =
        CommandBus::new(medflow_infra::db::sqlx_pool(&url, 4).await?, ());
    let metadata = || EventMetadata {
        actor_id: None,
        actor_role: None,
        request_id: "bench-seed".into(),
    };
    let windows: Vec<RawWindow> = ["monday", "tuesday", "wednesday", "thursday", "friday"]
        .iter()
        .flat_map(|day| {
            [
                RawWindow::new(day, "08:00", "12:00"),
                RawWindow::new(day, "13:00", "18:00"),
            ]
        })
        .collect();
    let weekly = WeeklyAvailability::parse("windows", &windows).map_err(anyhow::Error::msg)?;
    let admin = AccountId(Uuid::from_u128(1));

    eprintln!("seeding {count} verified doctors");
    let mut doctors = Vec::with_capacity(count);
    for number in 0..count {
        let doctor = AccountId(Uuid::new_v4());
        let id = doctor.to_string();
        let name = format!("Dr. Bench Doctor{number}");
        let details = ProfileDetails {
            display_name: keys
                .seal(doctor.0, "doctor_display_name", name.as_bytes())
                .await?,
            name_tokens: index.name_tokens(&name),
            specialty: Specialty::parse("specialty", SPECIALTIES[number % SPECIALTIES.len()])
                .map_err(anyhow::Error::msg)?,
            license_number: keys
                .seal(
                    doctor.0,
                    "license_number",
                    format!("BENCH-{number}").as_bytes(),
                )
                .await?,
            license_fingerprint: index.license_fingerprint(&format!("BENCH-{number}")),
            issuing_authority: "Bench Medical Council".into(),
            biography: keys
                .seal(doctor.0, "biography", b"Seeded for the benchmark.")
                .await?,
            time_zone: DoctorTimeZone::parse("time_zone", ZONES[number % ZONES.len()])
                .map_err(anyhow::Error::msg)?,
            languages: vec![Language::parse("languages", "en").map_err(anyhow::Error::msg)?],
        };
        let document = LicenseDocument {
            document_id: Uuid::new_v4(),
            object_key: format!("licenses/{id}/bench"),
            content_type: "application/pdf".into(),
            size: 1,
        };
        for command in [
            DoctorCommand::UpdateProfile { doctor, details },
            DoctorCommand::SetWeeklyAvailability {
                weekly: weekly.clone(),
            },
            DoctorCommand::AttachLicenseDocument { document },
            DoctorCommand::SubmitForVerification,
            DoctorCommand::Approve { by: admin },
        ] {
            bus.execute(&id, command, metadata())
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
        }
        doctors.push(doctor);
    }

    let client = env.owner_client().await;
    let started = std::time::Instant::now();
    loop {
        let row = client
            .query_one(
                "SELECT count(*) FROM doctor_profiles WHERE status = 'verified'",
                &[],
            )
            .await?;
        if row.get::<_, i64>(0) == count as i64 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "projection did not catch up in 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "read model ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let email = unique_email("bench.patient");
    api.register_ok("patient", &email, "Bench Patient").await;
    let token = api.login_ok(&email).await.token;
    Ok(Seeded {
        _env: env,
        api,
        token,
        doctors,
    })
}
