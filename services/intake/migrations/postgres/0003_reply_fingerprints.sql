-- Each reply keeps its command's fingerprint; NULL in replies stored
-- before it, which answer any command under their request id.
ALTER TABLE command_replies ADD COLUMN fingerprint BIGINT;
