use std::fmt;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    DoctorCommand, DoctorError, DoctorEvent, LicenseDocument, ProfileDetails, ReviewTrigger,
    MAX_LICENSE_DOCUMENTS,
};
use crate::availability::{DoctorSchedule, TimeRange, WeeklyAvailability};
use crate::values::AccountId;

/// Maximum number of time-off entries a profile keeps.
pub const MAX_TIME_OFF: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoctorStatus {
    /// No profile yet.
    #[default]
    New,
    Draft,
    Submitted,
    Verified,
    Rejected,
    Suspended,
}

impl DoctorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DoctorStatus::New => "new",
            DoctorStatus::Draft => "draft",
            DoctorStatus::Submitted => "submitted",
            DoctorStatus::Verified => "verified",
            DoctorStatus::Rejected => "rejected",
            DoctorStatus::Suspended => "suspended",
        }
    }
}

impl fmt::Display for DoctorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Write-side state of one doctor profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DoctorProfile {
    pub doctor: Option<AccountId>,
    pub status: DoctorStatus,
    pub details: Option<ProfileDetails>,
    pub documents: Vec<LicenseDocument>,
    pub weekly: WeeklyAvailability,
    pub time_off: Vec<(Uuid, TimeRange)>,
}

impl DoctorProfile {
    /// Returns the schedule slots are computed from, once the profile has a time zone.
    pub fn schedule(&self) -> Option<DoctorSchedule> {
        let details = self.details.as_ref()?;
        Some(DoctorSchedule {
            time_zone: details.time_zone,
            weekly: self.weekly.clone(),
            time_off: self.time_off.iter().map(|(_, range)| *range).collect(),
        })
    }

    /// Returns whether patients may find and book this doctor.
    pub fn is_bookable(&self) -> bool {
        self.status == DoctorStatus::Verified
    }

    fn require_profile(&self) -> Result<(), DoctorError> {
        if self.status == DoctorStatus::New {
            return Err(DoctorError::NotFound);
        }
        Ok(())
    }

    /// Allows schedule changes unless the profile is missing or suspended.
    fn require_editable_schedule(&self, action: &'static str) -> Result<(), DoctorError> {
        self.require_profile()?;
        if self.status == DoctorStatus::Suspended {
            return Err(DoctorError::InvalidTransition {
                action,
                status: self.status,
            });
        }
        Ok(())
    }

    fn transition(
        &self,
        action: &'static str,
        allowed: &[DoctorStatus],
    ) -> Result<(), DoctorError> {
        self.require_profile()?;
        if allowed.contains(&self.status) {
            Ok(())
        } else {
            Err(DoctorError::InvalidTransition {
                action,
                status: self.status,
            })
        }
    }
}

impl Aggregate for DoctorProfile {
    const TYPE: &'static str = "doctor";
    type Command = DoctorCommand;
    type Event = DoctorEvent;
    type Error = DoctorError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        use DoctorStatus::*;
        match command {
            DoctorCommand::UpdateProfile { doctor, details } => {
                if self.status == Suspended {
                    return Err(DoctorError::InvalidTransition {
                        action: "edit",
                        status: self.status,
                    });
                }
                let license_changed = self
                    .details
                    .as_ref()
                    .is_some_and(|old| old.license_differs(&details));
                sink.write(DoctorEvent::ProfileUpdated { doctor, details }, self)
                    .await;
                if license_changed && self.status == Verified {
                    sink.write(
                        DoctorEvent::ReturnedForReview {
                            trigger: ReviewTrigger::LicenseChanged,
                        },
                        self,
                    )
                    .await;
                }
            }
            DoctorCommand::AttachLicenseDocument { document } => {
                self.transition(
                    "attach a document to",
                    &[Draft, Submitted, Verified, Rejected],
                )?;
                if self.documents.len() >= MAX_LICENSE_DOCUMENTS {
                    return Err(DoctorError::TooManyDocuments(MAX_LICENSE_DOCUMENTS));
                }
                if self
                    .documents
                    .iter()
                    .any(|existing| existing.document_id == document.document_id)
                {
                    return Err(DoctorError::DuplicateDocument(document.document_id));
                }
                if self
                    .documents
                    .iter()
                    .any(|existing| existing.object_key == document.object_key)
                {
                    return Err(DoctorError::DuplicateObject);
                }
                let was_verified = self.status == Verified;
                sink.write(DoctorEvent::LicenseDocumentAttached { document }, self)
                    .await;
                if was_verified {
                    sink.write(
                        DoctorEvent::ReturnedForReview {
                            trigger: ReviewTrigger::DocumentAdded,
                        },
                        self,
                    )
                    .await;
                }
            }
            DoctorCommand::SubmitForVerification => {
                self.transition("submit", &[Draft, Rejected])?;
                if self.documents.is_empty() {
                    return Err(DoctorError::Incomplete(
                        "attach at least one license document before submitting",
                    ));
                }
                sink.write(DoctorEvent::SubmittedForVerification, self)
                    .await;
            }
            DoctorCommand::Approve { by } => {
                self.transition("approve", &[Submitted])?;
                sink.write(DoctorEvent::DoctorVerified { verified_by: by }, self)
                    .await;
            }
            DoctorCommand::Reject { reason, by } => {
                self.transition("reject", &[Submitted])?;
                sink.write(
                    DoctorEvent::DoctorRejected {
                        reason,
                        rejected_by: by,
                    },
                    self,
                )
                .await;
            }
            DoctorCommand::Suspend { reason, by } => {
                self.transition("suspend", &[Verified])?;
                sink.write(
                    DoctorEvent::DoctorSuspended {
                        reason,
                        suspended_by: by,
                    },
                    self,
                )
                .await;
            }
            DoctorCommand::Reinstate { by } => {
                self.transition("reinstate", &[Suspended])?;
                sink.write(DoctorEvent::DoctorReinstated { reinstated_by: by }, self)
                    .await;
            }
            DoctorCommand::SetWeeklyAvailability { weekly } => {
                self.require_editable_schedule("change the availability of")?;
                sink.write(DoctorEvent::WeeklyAvailabilitySet { weekly }, self)
                    .await;
            }
            DoctorCommand::AddTimeOff { time_off_id, range } => {
                self.require_editable_schedule("add time off to")?;
                if self.time_off.iter().any(|(id, _)| *id == time_off_id) {
                    return Err(DoctorError::DuplicateTimeOff(time_off_id));
                }
                if self.time_off.len() >= MAX_TIME_OFF {
                    return Err(DoctorError::TooManyTimeOff(MAX_TIME_OFF));
                }
                sink.write(DoctorEvent::TimeOffAdded { time_off_id, range }, self)
                    .await;
            }
            DoctorCommand::RemoveTimeOff { time_off_id } => {
                self.require_editable_schedule("remove time off from")?;
                if !self.time_off.iter().any(|(id, _)| *id == time_off_id) {
                    return Err(DoctorError::TimeOffNotFound(time_off_id));
                }
                sink.write(DoctorEvent::TimeOffRemoved { time_off_id }, self)
                    .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            DoctorEvent::ProfileUpdated { doctor, details } => {
                self.doctor = Some(doctor);
                self.details = Some(details);
                if self.status == DoctorStatus::New {
                    self.status = DoctorStatus::Draft;
                }
            }
            DoctorEvent::LicenseDocumentAttached { document } => self.documents.push(document),
            DoctorEvent::SubmittedForVerification | DoctorEvent::ReturnedForReview { .. } => {
                self.status = DoctorStatus::Submitted;
            }
            DoctorEvent::DoctorVerified { .. } | DoctorEvent::DoctorReinstated { .. } => {
                self.status = DoctorStatus::Verified;
            }
            DoctorEvent::DoctorRejected { .. } => self.status = DoctorStatus::Rejected,
            DoctorEvent::DoctorSuspended { .. } => self.status = DoctorStatus::Suspended,
            DoctorEvent::WeeklyAvailabilitySet { weekly } => self.weekly = weekly,
            DoctorEvent::TimeOffAdded { time_off_id, range } => {
                self.time_off.push((time_off_id, range))
            }
            DoctorEvent::TimeOffRemoved { time_off_id } => {
                self.time_off.retain(|(id, _)| *id != time_off_id)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::availability::DoctorTimeZone;
    use crate::doctor::{Language, Specialty};
    use crate::values::SealedValue;

    type DoctorTest = TestFramework<DoctorProfile>;

    const DOCTOR: AccountId = AccountId(Uuid::from_u128(10));
    const ADMIN: AccountId = AccountId(Uuid::from_u128(20));

    fn sealed(tag: &str) -> SealedValue {
        SealedValue {
            key_id: Uuid::nil(),
            nonce: tag.into(),
            ciphertext: tag.into(),
        }
    }

    fn details(license: &str) -> ProfileDetails {
        ProfileDetails {
            display_name: sealed("name"),
            name_tokens: vec!["a1".into()],
            specialty: Specialty::parse("specialty", "cardiology").unwrap(),
            license_number: sealed(license),
            license_fingerprint: format!("fp-{license}"),
            issuing_authority: "General Medical Council".into(),
            biography: sealed("bio"),
            time_zone: DoctorTimeZone::parse("time_zone", "Europe/Berlin").unwrap(),
            languages: vec![Language::parse("languages[0]", "en").unwrap()],
        }
    }

    fn document(id: u128) -> LicenseDocument {
        LicenseDocument {
            document_id: Uuid::from_u128(id),
            object_key: format!("licenses/{id}"),
            content_type: "application/pdf".into(),
            size: 1024,
        }
    }

    fn verified_history() -> Vec<DoctorEvent> {
        vec![
            DoctorEvent::ProfileUpdated {
                doctor: DOCTOR,
                details: details("L1"),
            },
            DoctorEvent::LicenseDocumentAttached {
                document: document(1),
            },
            DoctorEvent::SubmittedForVerification,
            DoctorEvent::DoctorVerified { verified_by: ADMIN },
        ]
    }

    #[test]
    fn first_update_creates_draft() {
        DoctorTest::with(())
            .given_no_previous_events()
            .when(DoctorCommand::UpdateProfile {
                doctor: DOCTOR,
                details: details("L1"),
            })
            .then_expect_events(vec![DoctorEvent::ProfileUpdated {
                doctor: DOCTOR,
                details: details("L1"),
            }]);
    }

    #[test]
    fn submit_requires_a_document() {
        DoctorTest::with(())
            .given(vec![DoctorEvent::ProfileUpdated {
                doctor: DOCTOR,
                details: details("L1"),
            }])
            .when(DoctorCommand::SubmitForVerification)
            .then_expect_error(DoctorError::Incomplete(
                "attach at least one license document before submitting",
            ));
    }

    #[test]
    fn approve_requires_submission() {
        DoctorTest::with(())
            .given(vec![DoctorEvent::ProfileUpdated {
                doctor: DOCTOR,
                details: details("L1"),
            }])
            .when(DoctorCommand::Approve { by: ADMIN })
            .then_expect_error(DoctorError::InvalidTransition {
                action: "approve",
                status: DoctorStatus::Draft,
            });
    }

    #[test]
    fn rejected_profile_can_resubmit() {
        let mut history = verified_history();
        history.pop();
        history.push(DoctorEvent::DoctorRejected {
            reason: sealed("blurry scan"),
            rejected_by: ADMIN,
        });
        DoctorTest::with(())
            .given(history)
            .when(DoctorCommand::SubmitForVerification)
            .then_expect_events(vec![DoctorEvent::SubmittedForVerification]);
    }

    #[test]
    fn license_change_after_verification_returns_to_review() {
        DoctorTest::with(())
            .given(verified_history())
            .when(DoctorCommand::UpdateProfile {
                doctor: DOCTOR,
                details: details("L2"),
            })
            .then_expect_events(vec![
                DoctorEvent::ProfileUpdated {
                    doctor: DOCTOR,
                    details: details("L2"),
                },
                DoctorEvent::ReturnedForReview {
                    trigger: ReviewTrigger::LicenseChanged,
                },
            ]);
    }

    #[test]
    fn biography_change_keeps_verification() {
        let mut changed = details("L1");
        changed.biography = sealed("new bio");
        DoctorTest::with(())
            .given(verified_history())
            .when(DoctorCommand::UpdateProfile {
                doctor: DOCTOR,
                details: changed.clone(),
            })
            .then_expect_events(vec![DoctorEvent::ProfileUpdated {
                doctor: DOCTOR,
                details: changed,
            }]);
    }

    #[test]
    fn document_after_verification_returns_to_review() {
        DoctorTest::with(())
            .given(verified_history())
            .when(DoctorCommand::AttachLicenseDocument {
                document: document(2),
            })
            .then_expect_events(vec![
                DoctorEvent::LicenseDocumentAttached {
                    document: document(2),
                },
                DoctorEvent::ReturnedForReview {
                    trigger: ReviewTrigger::DocumentAdded,
                },
            ]);
    }

    #[test]
    fn duplicate_document_is_rejected() {
        DoctorTest::with(())
            .given(verified_history())
            .when(DoctorCommand::AttachLicenseDocument {
                document: document(1),
            })
            .then_expect_error(DoctorError::DuplicateDocument(Uuid::from_u128(1)));
    }

    #[test]
    fn same_object_cannot_be_attached_twice() {
        let mut again = document(2);
        again.object_key = document(1).object_key;
        DoctorTest::with(())
            .given(verified_history())
            .when(DoctorCommand::AttachLicenseDocument { document: again })
            .then_expect_error(DoctorError::DuplicateObject);
    }

    #[test]
    fn suspension_blocks_edits_until_reinstated() {
        let mut history = verified_history();
        history.push(DoctorEvent::DoctorSuspended {
            reason: sealed("complaint"),
            suspended_by: ADMIN,
        });
        DoctorTest::with(())
            .given(history.clone())
            .when(DoctorCommand::UpdateProfile {
                doctor: DOCTOR,
                details: details("L1"),
            })
            .then_expect_error(DoctorError::InvalidTransition {
                action: "edit",
                status: DoctorStatus::Suspended,
            });
        DoctorTest::with(())
            .given(history)
            .when(DoctorCommand::Reinstate { by: ADMIN })
            .then_expect_events(vec![DoctorEvent::DoctorReinstated {
                reinstated_by: ADMIN,
            }]);
    }

    #[test]
    fn suspended_profile_cannot_change_schedule() {
        let mut history = verified_history();
        history.push(DoctorEvent::DoctorSuspended {
            reason: sealed("complaint"),
            suspended_by: ADMIN,
        });
        DoctorTest::with(())
            .given(history)
            .when(DoctorCommand::SetWeeklyAvailability {
                weekly: WeeklyAvailability::default(),
            })
            .then_expect_error(DoctorError::InvalidTransition {
                action: "change the availability of",
                status: DoctorStatus::Suspended,
            });
    }

    #[test]
    fn suspend_requires_verification() {
        DoctorTest::with(())
            .given(vec![DoctorEvent::ProfileUpdated {
                doctor: DOCTOR,
                details: details("L1"),
            }])
            .when(DoctorCommand::Suspend {
                reason: sealed("r"),
                by: ADMIN,
            })
            .then_expect_error(DoctorError::InvalidTransition {
                action: "suspend",
                status: DoctorStatus::Draft,
            });
    }

    #[test]
    fn time_off_is_added_and_removed_by_id() {
        let range =
            TimeRange::parse("time_off", "2026-12-24T00:00:00Z", "2026-12-27T00:00:00Z").unwrap();
        let id = Uuid::from_u128(77);
        DoctorTest::with(())
            .given(vec![
                DoctorEvent::ProfileUpdated {
                    doctor: DOCTOR,
                    details: details("L1"),
                },
                DoctorEvent::TimeOffAdded {
                    time_off_id: id,
                    range,
                },
            ])
            .when(DoctorCommand::RemoveTimeOff { time_off_id: id })
            .then_expect_events(vec![DoctorEvent::TimeOffRemoved { time_off_id: id }]);
        DoctorTest::with(())
            .given(vec![DoctorEvent::ProfileUpdated {
                doctor: DOCTOR,
                details: details("L1"),
            }])
            .when(DoctorCommand::RemoveTimeOff { time_off_id: id })
            .then_expect_error(DoctorError::TimeOffNotFound(id));
    }

    #[test]
    fn schedule_needs_a_profile() {
        assert!(DoctorProfile::default().schedule().is_none());
        let mut profile = DoctorProfile::default();
        profile.apply(DoctorEvent::ProfileUpdated {
            doctor: DOCTOR,
            details: details("L1"),
        });
        assert_eq!(
            profile.schedule().unwrap().time_zone.name(),
            "Europe/Berlin"
        );
    }

    #[test]
    fn availability_requires_a_profile() {
        DoctorTest::with(())
            .given_no_previous_events()
            .when(DoctorCommand::SetWeeklyAvailability {
                weekly: WeeklyAvailability::default(),
            })
            .then_expect_error(DoctorError::NotFound);
    }
}
