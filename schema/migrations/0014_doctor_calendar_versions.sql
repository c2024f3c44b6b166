-- One row per doctor profile holding the sequence of its last event, kept by a trigger
-- on the event table, so that every writer of profile events updates it in the same
-- transaction. It is the lock that keeps a booking's slot check valid until commit:
--
--   * a booking or reschedule appends its event in one statement that first locks the
--     doctor's row FOR SHARE where the sequence is still the one its slot was checked
--     against. No row, no event: PostgreSQL re-reads a row that a concurrent profile
--     change updated, so the check fails once that change commits;
--   * a profile change updates the row as it appends, which waits for the bookings
--     holding the row, so what it reads in its next statements (the reservations that
--     new time off overlaps) includes them.
--
-- This replaces the advisory calendar lock, which needed BEGIN, the lock and the
-- guarded write as separate round trips.
-- No profile event may commit between the backfill below and the trigger's creation,
-- or its doctor's row would stay behind and every booking of that doctor would fail.
LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE doctor_calendar_versions
(
    doctor_id        uuid PRIMARY KEY,
    profile_sequence bigint NOT NULL CHECK (profile_sequence > 0)
);

INSERT INTO doctor_calendar_versions (doctor_id, profile_sequence)
SELECT aggregate_id::uuid, max(sequence)
FROM events
WHERE aggregate_type = 'doctor'
GROUP BY aggregate_id;

CREATE FUNCTION record_doctor_calendar_version() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    INSERT INTO doctor_calendar_versions (doctor_id, profile_sequence)
    VALUES (NEW.aggregate_id::uuid, NEW.sequence)
    ON CONFLICT (doctor_id) DO UPDATE
        SET profile_sequence = greatest(doctor_calendar_versions.profile_sequence,
                                        EXCLUDED.profile_sequence);
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_doctor_calendar_version
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'doctor')
EXECUTE FUNCTION record_doctor_calendar_version();

-- Locking a row FOR SHARE needs UPDATE, and the trigger runs as the writer.
GRANT SELECT, INSERT, UPDATE ON doctor_calendar_versions TO medflow_app;
