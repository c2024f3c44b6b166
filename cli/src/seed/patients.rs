//! Patient phase: registration and login. Both hash the password on the platform
//! (scrypt), so this phase is bound by the command API's CPU.

use super::client::Session;
use super::dataset;
use super::progress::PhaseTiming;
use super::{for_each_bounded, Seeder};

/// A registered, logged-in patient.
pub struct SeededPatient {
    pub session: Session,
}

/// Registers and logs in every patient; returns those that succeeded, by index.
pub async fn register_all(seeder: &Seeder) -> (Vec<SeededPatient>, PhaseTiming) {
    let count = seeder.settings.patients;
    let phase = seeder.progress.phase("patients", count as u64);
    let results = for_each_bounded(0..count, seeder.concurrency(), &phase, |index| {
        register(seeder, index)
    })
    .await;
    let mut patients: Vec<(usize, SeededPatient)> = results.into_iter().flatten().collect();
    patients.sort_by_key(|(index, _)| *index);
    let patients = patients.into_iter().map(|(_, patient)| patient).collect();
    (patients, phase.finish())
}

async fn register(seeder: &Seeder, index: usize) -> Option<(usize, SeededPatient)> {
    let identity = dataset::patient_identity(seeder.random_seed, index, &seeder.run);
    seeder
        .client
        .register("patient", &identity.email, &identity.name)
        .await
        .ok()?;
    let session = seeder
        .client
        .login(&identity.email, super::SEEDED_PASSWORD)
        .await
        .ok()?;
    Some((index, SeededPatient { session }))
}
