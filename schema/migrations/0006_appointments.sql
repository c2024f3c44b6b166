-- Write side of appointment booking. Every appointment that holds its slot (booked or
-- in progress) has one reservation row, written in the same transaction as the
-- appointment's events. The exclusion constraints make PostgreSQL reject a second
-- overlapping interval for the same doctor or the same patient, whatever the
-- interleaving of concurrent transactions; the command API turns that into a 409.
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE appointment_reservations
(
    appointment_id uuid PRIMARY KEY,
    doctor_id      uuid      NOT NULL,
    patient_id     uuid      NOT NULL,
    during         tstzrange NOT NULL CHECK (NOT isempty(during)),
    CONSTRAINT appointment_reservations_doctor_overlap
        EXCLUDE USING gist (doctor_id WITH =, during WITH &&),
    CONSTRAINT appointment_reservations_patient_overlap
        EXCLUDE USING gist (patient_id WITH =, during WITH &&)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON appointment_reservations TO medflow_app;

-- Read model of appointments, maintained by the "appointments" projection. It backs a
-- patient's list, a doctor's day schedule, the booked intervals that the slot list
-- subtracts, and the admin overview. The cancellation reason stays sealed.
CREATE TABLE appointments
(
    appointment_id   uuid PRIMARY KEY,
    patient_id       uuid        NOT NULL,
    doctor_id        uuid        NOT NULL,
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL,
    doctor_time_zone text        NOT NULL,
    status           text        NOT NULL,
    cancelled_by     text,
    cancel_reason    jsonb,
    reschedule_count integer     NOT NULL DEFAULT 0,
    booked_at        timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    video_started_at timestamptz,
    video_ended_at   timestamptz,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX appointments_patient ON appointments (patient_id, starts_at, appointment_id);
CREATE INDEX appointments_doctor ON appointments (doctor_id, starts_at, appointment_id);
CREATE INDEX appointments_doctor_active ON appointments (doctor_id, starts_at)
    INCLUDE (ends_at) WHERE status IN ('booked', 'in_progress');
CREATE INDEX appointments_starts_at ON appointments (starts_at);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON appointments TO medflow_app;
