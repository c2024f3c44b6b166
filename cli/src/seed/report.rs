//! The summary of a seeding run: phases, requests per endpoint with errors and
//! latencies, what was created, and what the platform reports.

use std::fmt::Write as _;
use std::time::Duration;

use super::bookings::{BookingOutcome, DirectoryCheck};
use super::client::{EndpointSummary, FailureSample};
use super::doctors::DoctorStatus;
use super::platform::PlatformNumbers;
use super::progress::PhaseTiming;
use super::Seeder;

/// Failure kinds listed in the summary at most.
const MAX_FAILURE_LINES: usize = 10;

/// Everything a seeding run did and measured.
#[derive(Debug, Clone)]
pub struct SeedReport {
    /// Short id in every e-mail address of the run.
    pub run: String,
    pub random_seed: u64,
    pub wall_time: Duration,
    pub phases: Vec<PhaseTiming>,
    pub endpoints: Vec<EndpointSummary>,
    pub failures: Vec<FailureSample>,
    /// Final status per seeded doctor, with the account id once registered.
    pub doctors: Vec<(Option<String>, DoctorStatus)>,
    pub patients_requested: usize,
    /// Patients registered and logged in.
    pub patients_seeded: usize,
    pub bookings: BookingOutcome,
    /// Downloaded licenses whose bytes differed from the upload.
    pub license_mismatches: u64,
    /// `None` when the directory could not be listed, or no patient existed to list it.
    pub directory: Option<DirectoryCheck>,
    pub accepted_commands: u64,
    /// Events appended by the accepted commands, from their returned sequences.
    pub events_written: u64,
    pub session_renewals: u64,
    pub platform: PlatformNumbers,
}

#[allow(clippy::too_many_arguments)]
pub fn build(
    seeder: &Seeder,
    wall_time: Duration,
    phases: Vec<PhaseTiming>,
    doctors: Vec<(Option<String>, DoctorStatus)>,
    patients_seeded: usize,
    bookings: BookingOutcome,
    license_mismatches: u64,
    directory: Option<DirectoryCheck>,
    platform: PlatformNumbers,
) -> SeedReport {
    SeedReport {
        run: seeder.run.clone(),
        random_seed: seeder.random_seed,
        wall_time,
        phases,
        endpoints: seeder.client.endpoint_summaries(),
        failures: seeder.client.failure_samples(),
        doctors,
        patients_requested: seeder.settings.patients,
        patients_seeded,
        bookings,
        license_mismatches,
        directory,
        accepted_commands: seeder.client.accepted_commands(),
        events_written: seeder.client.events_written(),
        session_renewals: seeder.client.session_renewals(),
        platform,
    }
}

impl SeedReport {
    /// 5xx responses, unexpected 4xx responses and requests without a response.
    pub fn request_errors(&self) -> u64 {
        self.endpoints
            .iter()
            .map(|row| row.server_errors + row.client_errors + row.transport_errors)
            .sum()
    }

    /// Seeded doctor ids with `status`.
    pub fn doctor_ids(&self, status: DoctorStatus) -> Vec<&str> {
        self.doctors
            .iter()
            .filter(|(_, each)| *each == status)
            .filter_map(|(id, _)| id.as_deref())
            .collect()
    }

    fn doctor_count(&self, status: DoctorStatus) -> usize {
        self.doctors
            .iter()
            .filter(|(_, each)| *each == status)
            .count()
    }

    /// Problems that make `medflow seed` exit with a failure status: request errors, a
    /// double booking, a license that changed in the store, or a directory that does not
    /// match the doctors' statuses.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let errors = self.request_errors();
        if errors > 0 {
            problems.push(format!(
                "{errors} requests failed (5xx, unexpected 4xx or no response)"
            ));
        }
        if self.bookings.contests.double_booked > 0 {
            problems.push(format!(
                "{} contested slots were booked more than once",
                self.bookings.contests.double_booked
            ));
        }
        if self.bookings.directory_ready == Some(false) {
            problems.push(
                "the directory did not list every approved doctor before the bookings".to_owned(),
            );
        }
        if self.license_mismatches > 0 {
            problems.push(format!(
                "{} downloaded licenses differ from their upload",
                self.license_mismatches
            ));
        }
        match &self.directory {
            Some(check) if !check.matches() => problems.push(format!(
                "the directory lists {} of {} verified seeded doctors and {} that it should not",
                check.listed, check.expected, check.listed_unexpectedly
            )),
            Some(_) => {}
            None if self.patients_seeded > 0 => {
                problems.push("the directory could not be checked".to_owned())
            }
            None => {}
        }
        problems
    }

    /// Renders the summary as plain text tables.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_phases(&mut out);
        self.render_endpoints(&mut out);
        self.render_failures(&mut out);
        self.render_accounts(&mut out);
        self.render_appointments(&mut out);
        self.render_platform(&mut out);
        out
    }

    fn render_phases(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\nseed run {} (random seed {}) finished in {:.1} s\n",
            self.run,
            self.random_seed,
            self.wall_time.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "{:<16} {:>13} {:>10} {:>9}",
            "phase", "done/total", "seconds", "per s"
        );
        for phase in &self.phases {
            let _ = writeln!(
                out,
                "{:<16} {:>13} {:>10.1} {:>9.1}",
                phase.name,
                format!("{}/{}", phase.done, phase.total),
                phase.elapsed.as_secs_f64(),
                phase.rate_per_second()
            );
        }
    }

    fn render_endpoints(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\n{:<60} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6} {:>6} {:>9} {:>9} {:>9}",
            "endpoint",
            "requests",
            "ok",
            "expected",
            "5xx",
            "4xx",
            "no-resp",
            "429",
            "p50 ms",
            "p99 ms",
            "max ms"
        );
        let millis = |duration: Duration| duration.as_secs_f64() * 1000.0;
        let mut total = [0u64; 7];
        for row in &self.endpoints {
            let _ = writeln!(
                out,
                "{:<60} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6} {:>6} {:>9.1} {:>9.1} {:>9.1}",
                row.endpoint.label(),
                row.requests,
                row.succeeded,
                row.expected,
                row.server_errors,
                row.client_errors,
                row.transport_errors,
                row.rate_limited,
                millis(row.p50),
                millis(row.p99),
                millis(row.max)
            );
            let counts = [
                row.requests,
                row.succeeded,
                row.expected,
                row.server_errors,
                row.client_errors,
                row.transport_errors,
                row.rate_limited,
            ];
            for (sum, count) in total.iter_mut().zip(counts) {
                *sum += count;
            }
        }
        let _ = writeln!(
            out,
            "{:<60} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6} {:>6}",
            "total", total[0], total[1], total[2], total[3], total[4], total[5], total[6]
        );
        let _ = writeln!(
            out,
            "expected: 409/422 for a slot taken meanwhile; 4xx: unexpected client errors; \
             no-resp: connection failures and timeouts; 429: rate-limited and sent again"
        );
    }

    fn render_failures(&self, out: &mut String) {
        if self.failures.is_empty() {
            return;
        }
        let _ = writeln!(out, "\nfailed requests by kind:");
        for failure in self.failures.iter().take(MAX_FAILURE_LINES) {
            let status = failure
                .status
                .map_or_else(|| "no response".to_owned(), |status| status.to_string());
            let _ = writeln!(
                out,
                "  {:>5} x {} {} {}: {}",
                failure.count,
                failure.endpoint.label(),
                status,
                failure.problem_type,
                failure.first_detail
            );
        }
        if self.failures.len() > MAX_FAILURE_LINES {
            let _ = writeln!(
                out,
                "  and {} more kinds",
                self.failures.len() - MAX_FAILURE_LINES
            );
        }
    }

    fn render_accounts(&self, out: &mut String) {
        let _ = writeln!(out);
        let doctors: Vec<String> = [
            DoctorStatus::Verified,
            DoctorStatus::Suspended,
            DoctorStatus::Rejected,
            DoctorStatus::Submitted,
            DoctorStatus::Failed,
        ]
        .iter()
        .map(|status| format!("{} {}", self.doctor_count(*status), status.label()))
        .collect();
        let _ = writeln!(
            out,
            "doctors:      {} requested: {}",
            self.doctors.len(),
            doctors.join(", ")
        );
        let _ = writeln!(
            out,
            "patients:     {} of {} registered and logged in",
            self.patients_seeded, self.patients_requested
        );
        if self.session_renewals > 0 {
            let _ = writeln!(
                out,
                "sessions:     {} expired during the run and were renewed by logging in again",
                self.session_renewals
            );
        }
    }

    fn render_appointments(&self, out: &mut String) {
        let bookings = &self.bookings;
        let _ = writeln!(
            out,
            "bookings:     {} of {} booked, {} given up after {} slot attempts; \
             {} slot requests retried after a conflict in total",
            bookings.booked,
            bookings.requested,
            bookings.gave_up,
            super::bookings::MAX_ATTEMPTS,
            bookings.retried_after_conflict
        );
        let _ = writeln!(
            out,
            "changes:      {} cancelled by patients, {} by doctors, {} rescheduled, \
             {} reschedules given up",
            bookings.cancelled_by_patients,
            bookings.cancelled_by_doctors,
            bookings.rescheduled,
            bookings.reschedules_gave_up
        );

        let contests = &bookings.contests;
        let _ = writeln!(
            out,
            "contests:     {} of {} slots with {} requests: {} with exactly one winner, {} \
             without a winner, {} double-booked; {} requests lost with 409",
            contests.slots,
            contests.requested,
            contests.contenders,
            contests.single_winner,
            contests.no_winner,
            contests.double_booked,
            contests.lost_with_conflict
        );

        let directory = match &self.directory {
            Some(check) if check.matches() => format!(
                "lists all {} verified seeded doctors and none of the others",
                check.expected
            ),
            Some(check) => format!(
                "MISMATCH: lists {} of {} verified seeded doctors and {} others",
                check.listed, check.expected, check.listed_unexpectedly
            ),
            None => "not checked".to_owned(),
        };
        let _ = writeln!(out, "directory:    {directory}");
    }

    fn render_platform(&self, out: &mut String) {
        let platform = &self.platform;
        let not_available = || "not available".to_owned();
        let _ = writeln!(
            out,
            "commands:     {} accepted, {} events written (from the returned sequences)",
            self.accepted_commands, self.events_written
        );

        let published = platform
            .events_published
            .map_or_else(not_available, |count| format!("{count} (all clients)"));
        let backlog = platform
            .relay_backlog_at_end
            .map_or_else(not_available, |count| format!("{count} events"));
        let _ = writeln!(
            out,
            "relay:        events published during the run: {published}; backlog at the end: {backlog}"
        );

        let lag = match &platform.projection_lag_at_end {
            Some(lag) => {
                let total: u64 = lag.values().sum();
                let largest = lag
                    .iter()
                    .filter(|(_, value)| **value > 0)
                    .max_by_key(|(_, value)| **value)
                    .map(|(name, value)| format!(", most in {name}: {value}"))
                    .unwrap_or_default();
                format!("{total} messages{largest}")
            }
            None => not_available(),
        };
        let _ = writeln!(out, "projections:  lag at the end: {lag}");

        let wait = super::platform::CATCH_UP_WAIT.as_secs();
        let after = |duration: Option<Duration>, available: bool| match duration {
            Some(duration) => format!("after {:.1} s", duration.as_secs_f64()),
            None if available => format!("not within {wait} s"),
            None => not_available(),
        };
        let relay_caught_up = after(
            platform.relay_caught_up_after,
            platform.relay_backlog_at_end.is_some(),
        );
        let projections_caught_up = after(
            platform.projections_caught_up_after,
            platform.projection_lag_at_end.is_some(),
        );
        let gauge_note = if platform.projection_lag_at_end.is_some() {
            " (their lag gauge refreshes every 5 s)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "caught up:    relay {relay_caught_up}, projections {projections_caught_up}{gauge_note}"
        );
    }
}
