//! `medflow seed` against the real command and query APIs, relay and projectors of a
//! test environment: the seeded doctors end in the planned statuses, the directory lists
//! only the verified ones, and no doctor or patient has overlapping appointments.

use std::collections::HashSet;
use std::time::Duration;

use medflow_cli::platform::PlatformArgs;
use medflow_cli::seed::{self, DoctorStatus, ProgressMode, SeedSettings};
use medflow_tests::api::{unique_email, PASSWORD};
use medflow_tests::fixtures::Fixtures;
use medflow_tests::wait::eventually;
use medflow_tests::TestEnv;
use serde_json::Value;

fn settings(command_url: &str, query_url: &str, admin_email: &str) -> SeedSettings {
    SeedSettings {
        platform: PlatformArgs {
            command_url: command_url.to_owned(),
            query_url: query_url.to_owned(),
            admin_email: admin_email.to_owned(),
            admin_password: PASSWORD.to_owned(),
        },
        doctors: 6,
        patients: 20,
        bookings: Some(30),
        contested_slots: 3,
        contenders: 4,
        weeks: 2,
        concurrency: 8,
        random_seed: Some(42),
        relay_metrics_url: None,
        projector_metrics_url: None,
        progress: ProgressMode::None,
    }
}

/// Counts pairs of booked appointments that overlap for the same doctor or the same
/// patient in the appointments read model.
async fn overlapping_pairs(client: &tokio_postgres::Client, party: &str) -> i64 {
    let sql = format!(
        "SELECT count(*) FROM appointments a JOIN appointments b
           ON a.{party} = b.{party} AND a.appointment_id < b.appointment_id
          AND tstzrange(a.starts_at, a.ends_at) && tstzrange(b.starts_at, b.ends_at)
        WHERE a.status = 'booked' AND b.status = 'booked'"
    );
    client.query_one(&sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_small_platform() {
    let env = TestEnv::new().await;
    let api = env.start_spine().await;
    let admin_email = unique_email("admin");
    env.create_admin(&admin_email).await;

    let report = seed::run(settings(&api.command, &api.query, &admin_email))
        .await
        .expect("seeding starts");
    let summary = report.render();
    println!("{summary}");
    assert!(
        report.problems().is_empty(),
        "{:?}\n{summary}",
        report.problems()
    );

    // Six doctors: one rejected, one left for review, one approved and then suspended.
    let verified: HashSet<&str> = report
        .doctor_ids(DoctorStatus::Verified)
        .into_iter()
        .collect();
    assert_eq!(verified.len(), 3, "{summary}");
    assert_eq!(
        report.doctor_ids(DoctorStatus::Suspended).len(),
        1,
        "{summary}"
    );
    assert_eq!(
        report.doctor_ids(DoctorStatus::Rejected).len(),
        1,
        "{summary}"
    );
    assert_eq!(
        report.doctor_ids(DoctorStatus::Submitted).len(),
        1,
        "{summary}"
    );
    assert_eq!(report.patients_seeded, 20, "{summary}");

    let contests = &report.bookings.contests;
    assert_eq!(contests.slots, 3, "{summary}");
    assert_eq!(contests.single_winner, 3, "{summary}");
    assert_eq!(contests.lost_with_conflict, 9, "{summary}");
    assert!(report.bookings.booked > 0, "{summary}");
    assert!(
        report.events_written >= report.accepted_commands,
        "{summary}"
    );

    // The directory, read independently of the seeder, lists exactly the verified doctors.
    let fixtures = Fixtures::new(&env).await;
    let (_, token) = fixtures.patient().await;
    let page: Value = api
        .query_get(&token, "/doctors?limit=100")
        .await
        .json()
        .await
        .unwrap();
    let listed: HashSet<&str> = page["doctors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["doctor_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, verified, "{page}");

    // Every appointment the seeder made reaches the read model, and none overlap.
    let client = env.app_client().await;
    let created = report.bookings.booked + contests.single_winner;
    let cancelled = report.bookings.cancelled_by_patients + report.bookings.cancelled_by_doctors;
    eventually(
        Duration::from_secs(20),
        "appointments projected",
        || async {
            let row = client
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE status = 'cancelled') FROM appointments",
                &[],
            )
            .await
            .unwrap();
            let (total, cancelled_rows): (i64, i64) = (row.get(0), row.get(1));
            (total as u64 == created && cancelled_rows as u64 == cancelled).then_some(())
        },
    )
    .await;
    assert_eq!(overlapping_pairs(&client, "doctor_id").await, 0);
    assert_eq!(overlapping_pairs(&client, "patient_id").await, 0);
}
