-- Relay checkpoint: the last (transaction_id, global_position) published to Kafka.
CREATE TABLE relay_checkpoints
(
    relay_name      text PRIMARY KEY,
    transaction_id  xid8        NOT NULL,
    global_position bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Per-person data keys, wrapped (AES-256-GCM) by a master key from the environment.
-- Destroying a key (wrapped_key set to NULL) makes that person's sealed data unreadable.
CREATE TABLE data_keys
(
    key_id        uuid PRIMARY KEY,
    subject_id    uuid        NOT NULL,
    master_key_id text,
    wrapped_key   bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    destroyed_at  timestamptz,
    CHECK ((destroyed_at IS NULL) = (wrapped_key IS NOT NULL AND master_key_id IS NOT NULL))
);
CREATE UNIQUE INDEX data_keys_active_subject ON data_keys (subject_id) WHERE destroyed_at IS NULL;

-- Database-backed sessions: only the SHA-256 of the bearer token is stored.
CREATE TABLE sessions
(
    session_id   uuid PRIMARY KEY,
    token_hash   bytea       NOT NULL UNIQUE,
    account_id   uuid        NOT NULL,
    role         text        NOT NULL,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX sessions_active_by_account ON sessions (account_id) WHERE revoked_at IS NULL;

-- Security audit trail for actions that are not aggregate events (logins, logouts).
CREATE TABLE audit_entries
(
    entry_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    actor_id       uuid,
    actor_role     text,
    action         text        NOT NULL,
    target_type    text,
    target_id      text,
    outcome        text        NOT NULL,
    request_id     text,
    -- HMAC of the client IP address: lets reviewers correlate attempts without
    -- storing the address itself.
    client_address_index text
);
CREATE INDEX audit_entries_by_actor ON audit_entries (actor_id, recorded_at);

CREATE TRIGGER audit_entries_append_only
    BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION reject_append_only_change();

CREATE TRIGGER audit_entries_no_truncate
    BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION reject_append_only_change();

-- Idempotency for projections: the last sequence applied per aggregate, written in the
-- same transaction as the read-model change.
CREATE TABLE projection_offsets
(
    projection     text        NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    last_sequence  bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, aggregate_type, aggregate_id)
);

GRANT SELECT, INSERT, UPDATE ON relay_checkpoints TO medflow_app;
GRANT SELECT, INSERT, UPDATE ON data_keys TO medflow_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON sessions TO medflow_app;
GRANT SELECT, INSERT ON audit_entries TO medflow_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON projection_offsets TO medflow_app;
