-- Read model of accounts, maintained by the "accounts" projection. E-mail address and
-- name stay sealed (the same ciphertext as in the events); the query API opens them.
CREATE TABLE account_directory
(
    account_id    uuid PRIMARY KEY,
    role          text        NOT NULL,
    status        text        NOT NULL,
    email_index   text        NOT NULL,
    email         jsonb       NOT NULL,
    name          jsonb       NOT NULL,
    registered_by uuid,
    registered_at timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX account_directory_listing ON account_directory (registered_at, account_id);
CREATE INDEX account_directory_email ON account_directory (email_index);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON account_directory TO medflow_app;
