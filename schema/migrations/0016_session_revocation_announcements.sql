-- The APIs keep live sessions in memory between lookups. Whatever ends a session or
-- may end it sooner announces the session id on the session_revocations channel when
-- the change commits, whoever made it (the APIs, the CLI, an operator in psql): a
-- revocation, a deletion, a change of token, account or role, a changed expiry, a
-- last use moved back, or the whole table emptied. Marking a session used (last_seen_at
-- moving forward) announces nothing; that is the write every busy session makes.
CREATE FUNCTION announce_session_revocation() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('session_revocations', OLD.session_id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER sessions_announce_changes
    AFTER UPDATE ON sessions
    FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
          OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
          OR OLD.last_seen_at > NEW.last_seen_at
          OR OLD.token_hash IS DISTINCT FROM NEW.token_hash
          OR OLD.account_id IS DISTINCT FROM NEW.account_id
          OR OLD.role IS DISTINCT FROM NEW.role
          OR OLD.session_id IS DISTINCT FROM NEW.session_id)
    EXECUTE FUNCTION announce_session_revocation();

CREATE TRIGGER sessions_announce_deletions
    AFTER DELETE ON sessions
    FOR EACH ROW
    EXECUTE FUNCTION announce_session_revocation();

-- Emptying the table ends every session; listeners forget all they keep on a payload
-- that is not a session id.
CREATE FUNCTION announce_sessions_truncated() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('session_revocations', 'all');
    RETURN NULL;
END;
$$;

CREATE TRIGGER sessions_announce_truncation
    AFTER TRUNCATE ON sessions
    FOR EACH STATEMENT
    EXECUTE FUNCTION announce_sessions_truncated();
