-- Fewer statements per event in the sealing trigger, and one read-model announcement
-- per statement instead of one per offset row. What the triggers store and send is
-- unchanged.
--
-- The sealing trigger read the previous event's hash through event_predecessor_hash()
-- and the aggregate's subject from event_subjects, two lookups of the same aggregate.
-- Since migration 0013 every event row carries its subject, so one read of the
-- previous event now gives both.
CREATE OR REPLACE FUNCTION seal_event() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    previous bytea;
    subject  uuid;
    named    uuid := event_subject(NEW);
BEGIN
    IF NEW.sequence <= 1 THEN
        previous := decode(repeat('00', 32), 'hex');
    ELSE
        SELECT e.hash, e.subject_id
        INTO previous, subject
        FROM events e
        WHERE e.aggregate_type = NEW.aggregate_type
          AND e.aggregate_id = NEW.aggregate_id
          AND e.sequence = NEW.sequence - 1;
        IF previous IS NULL THEN
            RAISE EXCEPTION 'event % of % % has no predecessor to chain to',
                NEW.sequence, NEW.aggregate_type, NEW.aggregate_id;
        END IF;
    END IF;
    NEW.hash := event_hash(previous, NEW);
    IF named IS NOT NULL THEN
        subject := named;
        INSERT INTO event_subjects (subject_id, aggregate_type, aggregate_id)
        VALUES (subject, NEW.aggregate_type, NEW.aggregate_id)
        ON CONFLICT DO NOTHING;
    END IF;
    NEW.subject_id := subject;
    RETURN NEW;
END;
$$;

-- The projectors save a batch's offsets with one statement; a statement trigger
-- announces each projection it touched once instead of running for every row.
DROP TRIGGER projection_offsets_announce ON projection_offsets;

CREATE FUNCTION announce_read_model_changes() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('read_models', changed.projection)
    FROM (SELECT DISTINCT projection FROM changed_offsets) AS changed;
    RETURN NULL;
END;
$$;

CREATE TRIGGER projection_offsets_announce_inserts
    AFTER INSERT ON projection_offsets
    REFERENCING NEW TABLE AS changed_offsets
    FOR EACH STATEMENT EXECUTE FUNCTION announce_read_model_changes();

CREATE TRIGGER projection_offsets_announce_updates
    AFTER UPDATE ON projection_offsets
    REFERENCING NEW TABLE AS changed_offsets
    FOR EACH STATEMENT EXECUTE FUNCTION announce_read_model_changes();

DROP FUNCTION announce_read_model_change();
