-- Run once by the postgres image when its data volume is first initialised
-- (mounted into /docker-entrypoint-initdb.d by docker-compose.yml): one
-- database for intake's event store, one for projection's read models.
-- To re-run it, remove the volume: docker compose down -v.
CREATE DATABASE intake;
CREATE DATABASE projection;
