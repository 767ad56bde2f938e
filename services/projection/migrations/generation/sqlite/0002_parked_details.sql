-- Parked events record the log position, the dossier and version when
-- the payload names them, and when they were parked (0 in rows parked
-- before it).
ALTER TABLE parked_events ADD COLUMN position BIGINT;
ALTER TABLE parked_events ADD COLUMN dossier_id TEXT;
ALTER TABLE parked_events ADD COLUMN version BIGINT;
ALTER TABLE parked_events ADD COLUMN parked_at BIGINT NOT NULL DEFAULT 0;
