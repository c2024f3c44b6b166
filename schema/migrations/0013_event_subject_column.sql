-- Each event row carries the person its aggregate is about, so a replay reads it with
-- the row instead of joining event_subjects for every event. The sealing trigger sets
-- it: from the event itself for an aggregate's first event, and from event_subjects
-- for later ones. Like event_subjects, it is derived from the payloads and not part
-- of the hash chain.
ALTER TABLE events ADD COLUMN subject_id uuid;

ALTER TABLE events DISABLE TRIGGER events_append_only;
UPDATE events e
SET subject_id = s.subject_id
FROM event_subjects s
WHERE s.aggregate_type = e.aggregate_type
  AND s.aggregate_id = e.aggregate_id;
ALTER TABLE events ENABLE TRIGGER events_append_only;

CREATE OR REPLACE FUNCTION seal_event() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    subject uuid;
BEGIN
    NEW.hash := event_hash(event_predecessor_hash(NEW), NEW);
    subject := event_subject(NEW);
    IF subject IS NOT NULL THEN
        INSERT INTO event_subjects (subject_id, aggregate_type, aggregate_id)
        VALUES (subject, NEW.aggregate_type, NEW.aggregate_id)
        ON CONFLICT DO NOTHING;
    ELSIF NEW.sequence > 1 THEN
        SELECT s.subject_id INTO subject
        FROM event_subjects s
        WHERE s.aggregate_type = NEW.aggregate_type
          AND s.aggregate_id = NEW.aggregate_id;
    END IF;
    NEW.subject_id := subject;
    RETURN NEW;
END;
$$;
