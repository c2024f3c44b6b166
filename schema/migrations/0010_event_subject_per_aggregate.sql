-- Each aggregate is about at most one person, so the replay can join event_subjects by
-- aggregate without duplicating events. The unique index replaces the plain one.
CREATE UNIQUE INDEX event_subjects_one_per_aggregate ON event_subjects (aggregate_type, aggregate_id);
DROP INDEX event_subjects_by_aggregate;
