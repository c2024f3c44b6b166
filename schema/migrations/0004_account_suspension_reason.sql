-- The sealed reason of the current suspension, shown to admins; NULL while active.
ALTER TABLE account_directory ADD COLUMN suspension_reason jsonb;
