-- The checkpoint names its stream (creation time), the log position held
-- through and the log (crate::resume); NULL in a checkpoint written
-- before them.
ALTER TABLE checkpoints ADD COLUMN stream_created BIGINT;
ALTER TABLE checkpoints ADD COLUMN log_position BIGINT;
ALTER TABLE checkpoints ADD COLUMN log_id TEXT;
