-- Announces on the `read_models` channel which projection committed a change, so that
-- query API processes can drop what they derived from the read model before. The
-- payload is the projection name; PostgreSQL sends one notification per name and
-- transaction, at commit.
CREATE FUNCTION announce_read_model_change() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('read_models', NEW.projection);
    RETURN NULL;
END;
$$;

CREATE TRIGGER projection_offsets_announce
    AFTER INSERT OR UPDATE ON projection_offsets
    FOR EACH ROW EXECUTE FUNCTION announce_read_model_change();
