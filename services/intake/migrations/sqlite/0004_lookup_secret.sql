-- The secret lookup codes are made with (intake::lookup): one row, made at
-- the first start unless a file gives the secret. Every instance on this
-- store then prints the same code for a dossier.
CREATE TABLE IF NOT EXISTS lookup_secret (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    secret BLOB NOT NULL
);
