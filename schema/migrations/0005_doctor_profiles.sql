-- Read model of doctor profiles, maintained by the "doctors" projection. It backs the
-- directory (verified doctors only), the admin verification queue and the doctor's own
-- profile view. Display name, license number, biography and decision reasons stay
-- sealed; the query API opens them. name_tokens holds keyed hashes of the name's words.
CREATE TABLE doctor_profiles
(
    doctor_id           uuid PRIMARY KEY,
    status              text        NOT NULL,
    specialty           text        NOT NULL,
    display_name        jsonb       NOT NULL,
    name_tokens         text[]      NOT NULL,
    license_number      jsonb       NOT NULL,
    issuing_authority   text        NOT NULL,
    biography           jsonb       NOT NULL,
    time_zone           text        NOT NULL,
    languages           text[]      NOT NULL,
    documents           jsonb       NOT NULL DEFAULT '[]',
    weekly_availability jsonb       NOT NULL DEFAULT '[]',
    time_off            jsonb       NOT NULL DEFAULT '[]',
    decision_reason     jsonb,
    submitted_at        timestamptz,
    verified_at         timestamptz,
    updated_at          timestamptz NOT NULL
);
CREATE INDEX doctor_profiles_directory ON doctor_profiles (verified_at, doctor_id) WHERE status = 'verified';
CREATE INDEX doctor_profiles_specialty ON doctor_profiles (specialty) WHERE status = 'verified';
CREATE INDEX doctor_profiles_name_tokens ON doctor_profiles USING gin (name_tokens);
CREATE INDEX doctor_profiles_languages ON doctor_profiles USING gin (languages);
CREATE INDEX doctor_profiles_queue ON doctor_profiles (submitted_at, doctor_id) WHERE status = 'submitted';

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON doctor_profiles TO medflow_app;
