-- Durable reminder schedule of the reminder service: one row per appointment time and
-- offset (24 h, 2 h, 15 min before the start). schedule_sequence is the sequence of the
-- booking or reschedule event that set the time, so a reschedule adds new rows and
-- marks the old ones replaced, and a redelivered event finds its rows already there.
CREATE TABLE reminders
(
    appointment_id    uuid        NOT NULL,
    schedule_sequence bigint      NOT NULL,
    offset_minutes    integer     NOT NULL CHECK (offset_minutes > 0),
    patient_id        uuid        NOT NULL,
    doctor_id         uuid        NOT NULL,
    appointment_start timestamptz NOT NULL,
    doctor_time_zone  text        NOT NULL,
    due_at            timestamptz NOT NULL,
    -- pending, sent, skipped (due before the booking arrived), cancelled, replaced,
    -- failed (still unsent when the appointment started)
    status            text        NOT NULL,
    attempts          integer     NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL,
    last_error        text,
    message_id        text        NOT NULL UNIQUE,
    sent_at           timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (appointment_id, schedule_sequence, offset_minutes)
);
-- The scheduler's claim query: due pending rows, oldest first.
CREATE INDEX reminders_due ON reminders (next_attempt_at) WHERE status = 'pending';

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON reminders TO medflow_app;

-- In-app notifications. A row's insert is announced on the "notifications" channel
-- (payload: recipient id and notification id), which the query API relays to
-- connected clients over Server-Sent Events.
CREATE TABLE notifications
(
    notification_id uuid PRIMARY KEY,
    recipient_id    uuid        NOT NULL,
    kind            text        NOT NULL,
    appointment_id  uuid,
    payload         jsonb       NOT NULL,
    created_at      timestamptz NOT NULL,
    read_at         timestamptz
);
CREATE INDEX notifications_recipient ON notifications (recipient_id, created_at DESC, notification_id);

CREATE FUNCTION announce_notification() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('notifications', NEW.recipient_id::text || ':' || NEW.notification_id::text);
    RETURN NEW;
END;
$$;

CREATE TRIGGER notifications_announce
    AFTER INSERT ON notifications
    FOR EACH ROW EXECUTE FUNCTION announce_notification();

GRANT SELECT, INSERT, UPDATE, DELETE ON notifications TO medflow_app;
