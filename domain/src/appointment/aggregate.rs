use std::collections::VecDeque;
use std::fmt;

use chrono::TimeDelta;
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{AppointmentCommand, AppointmentError, AppointmentEvent, ConsultationKind, Party};
use crate::availability::TimeRange;
use crate::values::AccountId;

/// Number of LiveKit webhook ids an appointment remembers to drop redeliveries.
pub const MAX_REMEMBERED_WEBHOOKS: usize = 256;

/// How long before the slot start the doctor may start the consultation.
const START_LEAD: TimeDelta = TimeDelta::minutes(10);

/// How long after the slot start the doctor must wait before marking a no-show.
const NO_SHOW_GRACE: TimeDelta = TimeDelta::minutes(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppointmentStatus {
    /// Not booked yet.
    #[default]
    New,
    Booked,
    InProgress,
    Completed,
    NoShow,
    Cancelled,
}

impl AppointmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AppointmentStatus::New => "new",
            AppointmentStatus::Booked => "booked",
            AppointmentStatus::InProgress => "in_progress",
            AppointmentStatus::Completed => "completed",
            AppointmentStatus::NoShow => "no_show",
            AppointmentStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for AppointmentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Write-side state of one appointment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Appointment {
    pub status: AppointmentStatus,
    pub patient: Option<AccountId>,
    pub doctor: Option<AccountId>,
    pub slot: Option<TimeRange>,
    pub doctor_time_zone: String,
    /// Most recent LiveKit webhook ids, oldest first.
    pub webhook_ids: VecDeque<String>,
}

impl Appointment {
    /// Returns which side of the appointment `account` is on, if any.
    pub fn party_of(&self, account: AccountId) -> Option<Party> {
        if self.patient == Some(account) {
            Some(Party::Patient)
        } else if self.doctor == Some(account) {
            Some(Party::Doctor)
        } else {
            None
        }
    }

    /// Returns whether the appointment still occupies its slot in the calendar.
    pub fn holds_slot(&self) -> bool {
        matches!(
            self.status,
            AppointmentStatus::Booked | AppointmentStatus::InProgress
        )
    }

    fn booked_slot(&self) -> Result<TimeRange, AppointmentError> {
        self.slot.ok_or(AppointmentError::NotFound)
    }

    fn require(
        &self,
        action: &'static str,
        allowed: AppointmentStatus,
    ) -> Result<TimeRange, AppointmentError> {
        let slot = self.booked_slot()?;
        if self.status != allowed {
            return Err(AppointmentError::InvalidTransition {
                action,
                status: self.status,
            });
        }
        Ok(slot)
    }
}

impl Aggregate for Appointment {
    const TYPE: &'static str = "appointment";
    type Command = AppointmentCommand;
    type Event = AppointmentEvent;
    type Error = AppointmentError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            AppointmentCommand::Book {
                patient,
                doctor,
                slot,
                doctor_time_zone,
            } => {
                if self.status != AppointmentStatus::New {
                    return Err(AppointmentError::AlreadyBooked);
                }
                AppointmentEvent::AppointmentBooked {
                    patient,
                    doctor,
                    slot,
                    doctor_time_zone,
                    consultation: ConsultationKind::Video,
                }
            }
            AppointmentCommand::Reschedule { to, now } => {
                let from = self.require("reschedule", AppointmentStatus::Booked)?;
                if now >= from.start() {
                    return Err(AppointmentError::TooLate {
                        action: "reschedule",
                        reason: "its start time has passed",
                    });
                }
                if to == from {
                    return Err(AppointmentError::SameSlot);
                }
                AppointmentEvent::AppointmentRescheduled { from, to }
            }
            AppointmentCommand::Cancel {
                by,
                actor,
                reason,
                now,
            } => {
                let slot = self.require("cancel", AppointmentStatus::Booked)?;
                if now >= slot.end() {
                    return Err(AppointmentError::TooLate {
                        action: "cancel",
                        reason: "its slot has ended",
                    });
                }
                AppointmentEvent::AppointmentCancelled {
                    cancelled_by: by,
                    actor,
                    reason,
                }
            }
            AppointmentCommand::Start { actor, now } => {
                let slot = self.require("start", AppointmentStatus::Booked)?;
                if now < slot.start() - START_LEAD {
                    return Err(AppointmentError::TooEarly {
                        action: "start",
                        reason: "it opens 10 minutes before the slot start",
                    });
                }
                if now >= slot.end() {
                    return Err(AppointmentError::TooLate {
                        action: "start",
                        reason: "its slot has ended",
                    });
                }
                AppointmentEvent::AppointmentStarted {
                    started_by: actor,
                    at: now,
                }
            }
            AppointmentCommand::Complete { actor, now } => {
                self.require("complete", AppointmentStatus::InProgress)?;
                AppointmentEvent::AppointmentCompleted {
                    completed_by: actor,
                    at: now,
                }
            }
            AppointmentCommand::MarkNoShow { actor, now } => {
                let slot = self.require("mark as a no-show", AppointmentStatus::Booked)?;
                if now < slot.start() + NO_SHOW_GRACE {
                    return Err(AppointmentError::TooEarly {
                        action: "mark as a no-show",
                        reason: "wait until 10 minutes after the slot start",
                    });
                }
                AppointmentEvent::AppointmentMarkedNoShow {
                    marked_by: actor,
                    at: now,
                }
            }
            AppointmentCommand::RecordVideoActivity {
                webhook_id,
                activity,
                at,
            } => {
                self.booked_slot()?;
                if self.webhook_ids.contains(&webhook_id) {
                    // A redelivered webhook: LiveKit retries until it gets a 2xx.
                    return Ok(());
                }
                AppointmentEvent::VideoActivityRecorded {
                    webhook_id,
                    activity,
                    at,
                }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AppointmentEvent::AppointmentBooked {
                patient,
                doctor,
                slot,
                doctor_time_zone,
                ..
            } => {
                self.status = AppointmentStatus::Booked;
                self.patient = Some(patient);
                self.doctor = Some(doctor);
                self.slot = Some(slot);
                self.doctor_time_zone = doctor_time_zone;
            }
            AppointmentEvent::AppointmentRescheduled { to, .. } => self.slot = Some(to),
            AppointmentEvent::AppointmentCancelled { .. } => {
                self.status = AppointmentStatus::Cancelled;
            }
            AppointmentEvent::AppointmentStarted { .. } => {
                self.status = AppointmentStatus::InProgress;
            }
            AppointmentEvent::AppointmentCompleted { .. } => {
                self.status = AppointmentStatus::Completed;
            }
            AppointmentEvent::AppointmentMarkedNoShow { .. } => {
                self.status = AppointmentStatus::NoShow;
            }
            AppointmentEvent::VideoActivityRecorded { webhook_id, .. } => {
                if self.webhook_ids.len() == MAX_REMEMBERED_WEBHOOKS {
                    self.webhook_ids.pop_front();
                }
                self.webhook_ids.push_back(webhook_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appointment::VideoActivity;
    use crate::values::SealedValue;
    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    fn at(raw: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(raw)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn slot(start: &str) -> TimeRange {
        let start = at(start);
        TimeRange::new("slot", start, start + TimeDelta::minutes(30)).unwrap()
    }

    fn account(n: u128) -> AccountId {
        AccountId(Uuid::from_u128(n))
    }

    fn reason() -> SealedValue {
        SealedValue {
            key_id: Uuid::nil(),
            nonce: String::new(),
            ciphertext: String::new(),
        }
    }

    async fn run(
        appointment: &mut Appointment,
        command: AppointmentCommand,
    ) -> Result<Vec<AppointmentEvent>, AppointmentError> {
        let sink = EventSink::default();
        appointment.handle(command, &(), &sink).await?;
        Ok(sink.collect().await)
    }

    async fn booked() -> Appointment {
        let mut appointment = Appointment::default();
        run(
            &mut appointment,
            AppointmentCommand::Book {
                patient: account(1),
                doctor: account(2),
                slot: slot("2026-03-02T09:00:00Z"),
                doctor_time_zone: "Europe/Berlin".to_owned(),
            },
        )
        .await
        .unwrap();
        appointment
    }

    #[tokio::test]
    async fn booking_twice_is_rejected() {
        let mut appointment = booked().await;
        let error = run(
            &mut appointment,
            AppointmentCommand::Book {
                patient: account(1),
                doctor: account(2),
                slot: slot("2026-03-02T10:00:00Z"),
                doctor_time_zone: "Europe/Berlin".to_owned(),
            },
        )
        .await
        .unwrap_err();
        assert_eq!(error, AppointmentError::AlreadyBooked);
    }

    #[tokio::test]
    async fn completed_appointment_cannot_be_cancelled() {
        let mut appointment = booked().await;
        let now = at("2026-03-02T09:01:00Z");
        run(
            &mut appointment,
            AppointmentCommand::Start {
                actor: account(2),
                now,
            },
        )
        .await
        .unwrap();
        run(
            &mut appointment,
            AppointmentCommand::Complete {
                actor: account(2),
                now,
            },
        )
        .await
        .unwrap();
        let error = run(
            &mut appointment,
            AppointmentCommand::Cancel {
                by: Party::Patient,
                actor: account(1),
                reason: reason(),
                now,
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(
            error,
            AppointmentError::InvalidTransition {
                status: AppointmentStatus::Completed,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn cancelled_appointment_cannot_start() {
        let mut appointment = booked().await;
        run(
            &mut appointment,
            AppointmentCommand::Cancel {
                by: Party::Doctor,
                actor: account(2),
                reason: reason(),
                now: at("2026-03-01T09:00:00Z"),
            },
        )
        .await
        .unwrap();
        let error = run(
            &mut appointment,
            AppointmentCommand::Start {
                actor: account(2),
                now: at("2026-03-02T09:00:00Z"),
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(
            error,
            AppointmentError::InvalidTransition {
                status: AppointmentStatus::Cancelled,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn start_window_opens_ten_minutes_early() {
        let mut appointment = booked().await;
        let early = run(
            &mut appointment,
            AppointmentCommand::Start {
                actor: account(2),
                now: at("2026-03-02T08:49:00Z"),
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(early, AppointmentError::TooEarly { .. }));
        let events = run(
            &mut appointment,
            AppointmentCommand::Start {
                actor: account(2),
                now: at("2026-03-02T08:50:00Z"),
            },
        )
        .await
        .unwrap();
        assert_eq!(events.len(), 1);
    }

    #[tokio::test]
    async fn reschedule_after_start_time_is_rejected() {
        let mut appointment = booked().await;
        let error = run(
            &mut appointment,
            AppointmentCommand::Reschedule {
                to: slot("2026-03-03T09:00:00Z"),
                now: at("2026-03-02T09:00:00Z"),
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(error, AppointmentError::TooLate { .. }));
        let same = run(
            &mut appointment,
            AppointmentCommand::Reschedule {
                to: slot("2026-03-02T09:00:00Z"),
                now: at("2026-03-01T09:00:00Z"),
            },
        )
        .await
        .unwrap_err();
        assert_eq!(same, AppointmentError::SameSlot);
    }

    #[tokio::test]
    async fn no_show_waits_for_grace_period() {
        let mut appointment = booked().await;
        let early = run(
            &mut appointment,
            AppointmentCommand::MarkNoShow {
                actor: account(2),
                now: at("2026-03-02T09:05:00Z"),
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(early, AppointmentError::TooEarly { .. }));
        run(
            &mut appointment,
            AppointmentCommand::MarkNoShow {
                actor: account(2),
                now: at("2026-03-02T09:10:00Z"),
            },
        )
        .await
        .unwrap();
        assert_eq!(appointment.status, AppointmentStatus::NoShow);
        assert!(!appointment.holds_slot());
    }

    #[tokio::test]
    async fn redelivered_webhook_records_nothing() {
        let mut appointment = booked().await;
        let command = AppointmentCommand::RecordVideoActivity {
            webhook_id: "EV_1".to_owned(),
            activity: VideoActivity::RoomStarted,
            at: at("2026-03-02T09:00:00Z"),
        };
        let first = run(&mut appointment, command.clone()).await.unwrap();
        assert_eq!(first.len(), 1);
        let second = run(&mut appointment, command).await.unwrap();
        assert!(second.is_empty());
    }

    #[tokio::test]
    async fn webhook_for_unbooked_appointment_is_not_found() {
        let mut appointment = Appointment::default();
        let error = run(
            &mut appointment,
            AppointmentCommand::RecordVideoActivity {
                webhook_id: "EV_1".to_owned(),
                activity: VideoActivity::RoomFinished,
                at: at("2026-03-02T09:00:00Z"),
            },
        )
        .await
        .unwrap_err();
        assert_eq!(error, AppointmentError::NotFound);
    }

    #[test]
    fn party_of_identifies_both_sides() {
        let appointment = Appointment {
            patient: Some(account(1)),
            doctor: Some(account(2)),
            ..Appointment::default()
        };
        assert_eq!(appointment.party_of(account(1)), Some(Party::Patient));
        assert_eq!(appointment.party_of(account(2)), Some(Party::Doctor));
        assert_eq!(appointment.party_of(account(3)), None);
    }
}
