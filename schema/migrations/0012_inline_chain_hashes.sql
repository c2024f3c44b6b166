-- The chain hash functions call convert_to and extract, which PostgreSQL marks STABLE.
-- Declared IMMUTABLE, they could not be inlined: each event and audit entry ran every
-- field through a separate SQL function call, whose body was parsed again in each
-- transaction. Declared STABLE, the planner inlines them into the sealing triggers'
-- expressions. What they compute does not change.
ALTER FUNCTION audit_field(text) STABLE;
ALTER FUNCTION audit_instant(timestamptz) STABLE;
ALTER FUNCTION event_hash(bytea, events) STABLE;
ALTER FUNCTION audit_entry_hash(audit_entries) STABLE;
