-- Tamper evidence for the event table and the audit entries, patient links for replay,
-- access entries and signed checkpoints. docs/audit.md explains the design.

-- Length-prefixed UTF-8 bytes of a text value; NULL is encoded as length -1, so that
-- no two different field lists give the same bytes. infra/src/audit/chain.rs encodes
-- the same way.
CREATE FUNCTION audit_field(value text) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$
SELECT CASE
           WHEN value IS NULL THEN int4send(-1)
           ELSE int4send(octet_length(value)) || convert_to(value, 'UTF8')
           END
$$;

-- Microseconds since the Unix epoch, as 8 big-endian bytes.
CREATE FUNCTION audit_instant(value timestamptz) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$
SELECT int8send((extract(EPOCH FROM value) * 1000000)::bigint)
$$;

-- Each event's hash covers its content, its position and the hash of the aggregate's
-- previous event (32 zero bytes for the first). Writers of one aggregate are already
-- serialized by the primary key, so the chain adds no lock between aggregates.
ALTER TABLE events ADD COLUMN hash bytea;

CREATE FUNCTION event_hash(previous bytea, e events) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$
SELECT sha256(previous
                  || int8send(e.global_position)
                  || audit_field(e.aggregate_type)
                  || audit_field(e.aggregate_id)
                  || int8send(e.sequence)
                  || audit_field(e.event_type)
                  || audit_field(e.event_version)
                  || audit_field(e.payload::text)
                  || audit_field(e.metadata::text)
                  || audit_field(e.transaction_id::text)
                  || audit_instant(e.recorded_at))
$$;

CREATE FUNCTION event_predecessor_hash(e events) RETURNS bytea
    LANGUAGE plpgsql STABLE AS
$$
DECLARE
    previous bytea;
BEGIN
    IF e.sequence <= 1 THEN
        RETURN decode(repeat('00', 32), 'hex');
    END IF;
    SELECT hash INTO previous
    FROM events
    WHERE aggregate_type = e.aggregate_type
      AND aggregate_id = e.aggregate_id
      AND sequence = e.sequence - 1;
    IF previous IS NULL THEN
        RAISE EXCEPTION 'event % of % % has no predecessor to chain to',
            e.sequence, e.aggregate_type, e.aggregate_id;
    END IF;
    RETURN previous;
END;
$$;

-- Which person each aggregate is about, so a replay filtered by patient reads an index
-- instead of every payload. Written by the same trigger as the hash, in the writing
-- transaction.
CREATE TABLE event_subjects
(
    subject_id     uuid NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    PRIMARY KEY (subject_id, aggregate_type, aggregate_id)
);

CREATE FUNCTION as_uuid(value text) RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$
SELECT CASE
           WHEN value ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
               THEN value::uuid
           END
$$;

-- An account is about its holder; an appointment about its patient (named in the
-- booking, its first event). Later event kinds with a patient add a branch here.
CREATE FUNCTION event_subject(e events) RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$
SELECT CASE
           WHEN e.aggregate_type = 'account' AND e.sequence = 1 THEN as_uuid(e.aggregate_id)
           WHEN e.aggregate_type = 'appointment' AND e.event_type = 'AppointmentBooked'
               THEN as_uuid(e.payload -> 'AppointmentBooked' ->> 'patient')
           END
$$;

CREATE FUNCTION seal_event() RETURNS trigger
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
    END IF;
    RETURN NEW;
END;
$$;

-- Events written before this migration get their links in the chain now, in
-- sequence order per aggregate.
ALTER TABLE events DISABLE TRIGGER events_append_only;
DO
$$
DECLARE
    e events;
BEGIN
    FOR e IN SELECT * FROM events ORDER BY aggregate_type, aggregate_id, sequence
        LOOP
            UPDATE events
            SET hash = event_hash(event_predecessor_hash(e), e)
            WHERE global_position = e.global_position;
            IF event_subject(e) IS NOT NULL THEN
                INSERT INTO event_subjects (subject_id, aggregate_type, aggregate_id)
                VALUES (event_subject(e), e.aggregate_type, e.aggregate_id)
                ON CONFLICT DO NOTHING;
            END IF;
        END LOOP;
END;
$$;
ALTER TABLE events ENABLE TRIGGER events_append_only;
ALTER TABLE events ALTER COLUMN hash SET NOT NULL;

CREATE TRIGGER events_seal
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION seal_event();

-- Access entries: every read of patient data, allowed or denied, besides the security
-- entries (logins, logouts) the table already holds.
ALTER TABLE audit_entries
    ADD COLUMN patient_id     uuid,
    -- The client's IP address sealed under the actor's data key (JSON text).
    ADD COLUMN client_address text,
    ADD COLUMN transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    ADD COLUMN hash           bytea;

CREATE FUNCTION audit_entry_hash(a audit_entries) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$
SELECT sha256(int8send(a.entry_id)
                  || audit_instant(a.recorded_at)
                  || audit_field(a.actor_id::text)
                  || audit_field(a.actor_role)
                  || audit_field(a.action)
                  || audit_field(a.target_type)
                  || audit_field(a.target_id)
                  || audit_field(a.patient_id::text)
                  || audit_field(a.outcome)
                  || audit_field(a.request_id)
                  || audit_field(a.client_address_index)
                  || audit_field(a.client_address)
                  || audit_field(a.transaction_id::text))
$$;

CREATE FUNCTION seal_audit_entry() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    NEW.hash := audit_entry_hash(NEW);
    RETURN NEW;
END;
$$;

ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only;
UPDATE audit_entries SET hash = audit_entry_hash(audit_entries);
ALTER TABLE audit_entries ENABLE TRIGGER audit_entries_append_only;
ALTER TABLE audit_entries ALTER COLUMN hash SET NOT NULL;

CREATE TRIGGER audit_entries_seal
    BEFORE INSERT ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION seal_audit_entry();

CREATE INDEX audit_entries_by_patient ON audit_entries (patient_id, entry_id) WHERE patient_id IS NOT NULL;
CREATE INDEX audit_entries_by_time ON audit_entries (recorded_at);
CREATE INDEX events_by_time ON events (recorded_at);

-- Retention: audit entries are kept at least six years. The only deletion the database
-- allows is of entries older than that, by the owner, in a transaction that sets
-- medflow.retention_purge to 'on' (what `medflow audit purge` does).
CREATE FUNCTION guard_audit_entry_change() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    IF TG_OP = 'DELETE'
        AND current_setting('medflow.retention_purge', true) = 'on'
        AND OLD.recorded_at < now() - interval '6 years' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% on % is not allowed: audit entries are kept for six years', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

DROP TRIGGER audit_entries_append_only ON audit_entries;
CREATE TRIGGER audit_entries_append_only
    BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION guard_audit_entry_change();

-- Signed checkpoints over a range of positions of one stream ('events' by
-- global_position, 'audit_entries' by entry_id). digest chains the previous
-- checkpoint's digest with every row's position and hash in the range; the signature
-- (Ed25519, key held by the sealer, never by the database) covers all other columns.
CREATE TABLE audit_checkpoints
(
    checkpoint_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream          text        NOT NULL CHECK (stream IN ('events', 'audit_entries')),
    first_position  bigint      NOT NULL,
    last_position   bigint      NOT NULL CHECK (last_position >= first_position),
    row_count       bigint      NOT NULL,
    -- Positions in the range that no row holds (rolled-back inserts).
    missing         bigint[]    NOT NULL,
    previous_digest bytea       NOT NULL,
    digest          bytea       NOT NULL,
    key_id          text        NOT NULL,
    signature       bytea       NOT NULL,
    sealed_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, first_position)
);

CREATE TRIGGER audit_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION reject_append_only_change();

CREATE TRIGGER audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION reject_append_only_change();

GRANT SELECT, INSERT ON audit_checkpoints TO medflow_app;
GRANT SELECT, INSERT ON event_subjects TO medflow_app;
