-- The replay looks up each event's patient by aggregate; without this index that lookup
-- scanned the whole event_subjects table once per event.
CREATE INDEX event_subjects_by_aggregate ON event_subjects (aggregate_type, aggregate_id);
