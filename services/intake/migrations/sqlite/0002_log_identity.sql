-- The log's identity: a UUID drawn once (store::LogIdentity), with the
-- position the log had then.
CREATE TABLE IF NOT EXISTS log_identity (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    log_id         TEXT    NOT NULL,
    first_position BIGINT  NOT NULL
);
