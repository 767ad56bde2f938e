//! The event store: an append-only log of encoded events with positions in
//! commit order, unique (dossier, version), and the replies of commands by
//! client request id.

mod identity;
#[cfg(test)]
mod migration_tests;
mod secret;

use std::collections::HashMap;

use anyhow::Context as _;
use sqlkit::{Backend, column, list_placeholders, push, values_placeholders};
use sqlx::{AnyPool, Row as _, any::AnyArguments};

/// The event store's schema: `migrations/{postgres,sqlite}`, applied at
/// [`EventStore::open`].
pub(crate) static MIGRATIONS: sqlkit::Migrations = sqlkit::Migrations {
    name: "intake's event store",
    postgres: sqlx::migrate!("migrations/postgres"),
    sqlite: sqlx::migrate!("migrations/sqlite"),
};

/// One event ready to append, already encoded, with what the relay needs to
/// publish it without decoding it again.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub event_id: String,
    pub dossier_id: String,
    pub office_code: String,
    pub province_code: String,
    pub version: u64,
    pub kind: &'static str,
    pub recorded_at: i64,
    pub payload: Vec<u8>,
}

/// The reply to one appended command, encoded before positions are taken:
/// its `position` field is left 0. The store records the position of event
/// `event_index` of the append beside it, and [`EventStore::find_replies`]
/// gives that position back, so one statement can take positions and store
/// replies together.
#[derive(Clone, Debug)]
pub struct NewReply {
    pub request_id: String,
    pub event_index: usize,
    pub reply: Vec<u8>,
    /// The command's fingerprint (see [`crate::fingerprint`]), `None` when
    /// its caller gave none.
    pub fingerprint: Option<u64>,
}

/// A reply stored earlier, with the position of the event it answered.
#[derive(Clone, Debug)]
pub struct StoredReply {
    pub position: u64,
    pub reply: Vec<u8>,
    /// The fingerprint of the command it answered; `None` for a reply
    /// stored before fingerprints were (or by a caller that gave none):
    /// any command under its request id gets it, as before.
    pub fingerprint: Option<u64>,
}

impl StoredReply {
    /// Whether a command of `fingerprint` may take this reply: a retry of
    /// the command it answered, or either side unrecorded.
    pub fn answers(&self, fingerprint: Option<u64>) -> bool {
        match (self.fingerprint, fingerprint) {
            (Some(stored), Some(given)) => stored == given,
            _ => true,
        }
    }
}

/// A fingerprint as stored: the column is a signed BIGINT, so the 64 bits
/// are kept as they are, not the value.
fn fingerprint_column(fingerprint: Option<u64>) -> Option<i64> {
    fingerprint.map(|f| i64::from_ne_bytes(f.to_ne_bytes()))
}

fn fingerprint_from_column(column: Option<i64>) -> Option<u64> {
    column.map(|c| u64::from_ne_bytes(c.to_ne_bytes()))
}

/// One event read back, with its position.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub position: u64,
    pub payload: Vec<u8>,
}

/// How an append changes the deadline index: the open dossiers whose clock
/// runs, each with the instant it becomes late (see `Dossier::deadline`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeadlineChange {
    Set {
        dossier_id: String,
        due_at: i64,
        deadline_at: i64,
    },
    Clear {
        dossier_id: String,
    },
}

/// A dossier whose deadline has passed without a Late event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassedDeadline {
    pub dossier_id: String,
    pub due_at: i64,
    pub deadline_at: i64,
}

/// Why an append did not commit.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended the same (dossier, version) first.
    #[error("another writer appended to one of these dossiers first")]
    Conflict,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A group commit on PostgreSQL as one statement (one round trip, committed
/// on its own): take positions, insert the events and the replies, move the
/// deadline index. The rows come as arrays, so the statement is prepared once
/// per connection and kept. The head row stays locked until the statement
/// commits, so positions still follow commit order across writers.
const APPEND_POSTGRES: &str = "
WITH head AS (
    UPDATE log_head SET position = position + $1::bigint WHERE id = 1
    RETURNING position - $1::bigint AS base
), appended AS (
    INSERT INTO events (position, event_id, dossier_id, version, kind, recorded_at, payload)
    SELECT head.base + e.n, e.event_id, e.dossier_id, e.version, e.kind, e.recorded_at, e.payload
    FROM head, UNNEST($2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::bytea[])
        WITH ORDINALITY AS e(event_id, dossier_id, version, kind, recorded_at, payload, n)
), replied AS (
    INSERT INTO command_replies (request_id, position, reply, fingerprint)
    SELECT r.request_id, head.base + 1 + r.event_index, r.reply, r.fingerprint
    FROM head, UNNEST($8::text[], $9::bigint[], $10::bytea[], $11::bigint[])
        AS r(request_id, event_index, reply, fingerprint)
), cleared AS (
    DELETE FROM deadlines WHERE dossier_id = ANY($12::text[])
), deadlines_set AS (
    INSERT INTO deadlines (dossier_id, due_at, deadline_at)
    SELECT * FROM UNNEST($13::text[], $14::bigint[], $15::bigint[])
    ON CONFLICT (dossier_id) DO UPDATE SET due_at = excluded.due_at, deadline_at = excluded.deadline_at
)
SELECT base FROM head";

#[derive(Clone, Debug)]
pub struct EventStore {
    pool: AnyPool,
    backend: Backend,
    /// The same PostgreSQL database through sqlx's native driver, for the
    /// statements that bind arrays (the Any driver binds scalars only).
    pg: Option<sqlx::PgPool>,
    identity: LogIdentity,
}

pub use identity::LogIdentity;

/// How long intake waits for a PostgreSQL connection before a command
/// fails UNAVAILABLE. Its pools serve one writer and a few readers, so a
/// longer wait means the database is away, not busy.
const POSTGRES_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl EventStore {
    /// Opens the store at `url`, creating or migrating its tables
    /// ([`MIGRATIONS`]).
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        // PostgreSQL may be away (restarted, failed over): a command then
        // fails soon with UNAVAILABLE, for the client to retry with its
        // request id, rather than after the default wait.
        let acquire_timeout = match Backend::from_url(url)? {
            Backend::Postgres => POSTGRES_ACQUIRE_TIMEOUT,
            Backend::Sqlite => sqlkit::ACQUIRE_TIMEOUT,
        };
        let (pool, backend) =
            sqlkit::connect_in_with(url, None, 8, sqlkit::Durability::Durable, acquire_timeout)
                .await?;
        sqlkit::migrate(&pool, backend, &MIGRATIONS).await?;
        let pg = match backend {
            Backend::Postgres => Some(
                sqlkit::connect_postgres(
                    url,
                    None,
                    4,
                    sqlkit::Durability::Durable,
                    acquire_timeout,
                )
                .await?,
            ),
            Backend::Sqlite => None,
        };
        let identity = LogIdentity::load_or_create(&pool).await?;
        Ok(Self {
            pool,
            backend,
            pg,
            identity,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Stored replies of the given request ids that were already answered.
    pub async fn find_replies(
        &self,
        request_ids: &[&str],
    ) -> anyhow::Result<HashMap<String, StoredReply>> {
        let mut found = HashMap::new();
        if request_ids.is_empty() {
            return Ok(found);
        }
        if let Some(pg) = &self.pg {
            let rows = sqlx::query(
                "SELECT request_id, position, reply, fingerprint FROM command_replies WHERE request_id = ANY($1)",
            )
            .bind(request_ids)
            .fetch_all(pg)
            .await
            .context("look up earlier replies")?;
            for row in rows {
                let reply = StoredReply {
                    position: u64::try_from(row.try_get::<i64, _>(1)?).unwrap_or(0),
                    reply: row.try_get(2)?,
                    fingerprint: fingerprint_from_column(row.try_get(3)?),
                };
                found.insert(row.try_get::<String, _>(0)?, reply);
            }
            return Ok(found);
        }
        for chunk in request_ids.chunks(2000) {
            let sql = format!(
                "SELECT request_id, position, reply, fingerprint FROM command_replies WHERE request_id IN ({})",
                list_placeholders(self.backend, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q
                .fetch_all(&self.pool)
                .await
                .context("look up earlier replies")?
            {
                let reply = StoredReply {
                    position: u64::try_from(row.try_get::<i64, _>(1)?).unwrap_or(0),
                    reply: row.try_get(2)?,
                    fingerprint: fingerprint_from_column(row.try_get(3)?),
                };
                found.insert(row.try_get::<String, _>(0)?, reply);
            }
        }
        Ok(found)
    }

    /// Every stored event of the given dossiers, in (dossier, version) order.
    pub async fn load_dossiers(&self, dossier_ids: &[&str]) -> anyhow::Result<Vec<Vec<u8>>> {
        if let Some(pg) = &self.pg {
            let rows = sqlx::query(
                "SELECT payload FROM events WHERE dossier_id = ANY($1) ORDER BY dossier_id, version",
            )
            .bind(dossier_ids)
            .fetch_all(pg)
            .await
            .context("load dossiers' events")?;
            return rows
                .into_iter()
                .map(|row| Ok(row.try_get::<Vec<u8>, _>(0)?))
                .collect();
        }
        let mut payloads = Vec::new();
        for chunk in dossier_ids.chunks(2000) {
            let sql = format!(
                "SELECT payload FROM events WHERE dossier_id IN ({}) ORDER BY dossier_id, version",
                list_placeholders(self.backend, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q
                .fetch_all(&self.pool)
                .await
                .context("load dossiers' events")?
            {
                payloads.push(row.try_get::<Vec<u8>, _>(0)?);
            }
        }
        Ok(payloads)
    }

    /// Appends `events` in one transaction (a group commit) with each
    /// command's reply and the deadline index's changes. Returns the first
    /// position taken; event `i` gets `first + i`.
    pub async fn append(
        &self,
        events: &[NewEvent],
        replies: &[NewReply],
        deadlines: &[DeadlineChange],
    ) -> Result<u64, AppendError> {
        if let Some(pg) = &self.pg {
            return append_postgres(pg, events, replies, deadlines).await;
        }
        let mut conn = self.pool.acquire().await.context("acquire a connection")?;
        let appended = append_sqlite(self.backend, &mut conn, events, replies, deadlines).await;
        if appended.is_err() {
            // A COMMIT that failed (SQLITE_FULL, SQLITE_BUSY) leaves its
            // transaction open, and the driver may then count it wrong: the
            // next append on this connection would run inside it, answer
            // "appended" and be lost with it, while every other connection
            // waits for its lock (seen on a full disk, tests/tests/disk_full.rs).
            // Closing the connection rolls back whatever it held.
            conn.close_on_drop();
        }
        appended
    }

    /// Up to `limit` events after `position`, in position order.
    pub async fn read_after(&self, position: u64, limit: u32) -> anyhow::Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT position, payload FROM events WHERE position > $1 ORDER BY position LIMIT $2",
        )
        .bind(position as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .context("read events after a position")?;
        rows.into_iter()
            .map(|row| {
                Ok(StoredEvent {
                    position: u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0),
                    payload: row.try_get(1)?,
                })
            })
            .collect()
    }

    /// Dossiers whose deadline is at or before `now`, earliest first.
    pub async fn passed_deadlines(
        &self,
        now: i64,
        limit: u32,
    ) -> anyhow::Result<Vec<PassedDeadline>> {
        let rows = sqlx::query(
            "SELECT dossier_id, due_at, deadline_at FROM deadlines WHERE deadline_at <= $1 ORDER BY deadline_at, dossier_id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .context("read passed deadlines")?;
        rows.into_iter()
            .map(|row| {
                Ok(PassedDeadline {
                    dossier_id: row.try_get(0)?,
                    due_at: row.try_get(1)?,
                    deadline_at: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// The earliest deadline after `now`, if any dossier has one.
    pub async fn next_deadline(&self, now: i64) -> anyhow::Result<Option<i64>> {
        let row = sqlx::query("SELECT MIN(deadline_at) FROM deadlines WHERE deadline_at > $1")
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .context("read the next deadline")?;
        Ok(row.try_get::<Option<i64>, _>(0)?)
    }

    /// How many events desks caused: all but the deadline monitor's Late.
    pub async fn count_desk_events(&self) -> anyhow::Result<u64> {
        let n: i64 =
            sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM events WHERE kind <> 'late'")
                .fetch_one(&self.pool)
                .await
                .context("count desk events")?
                .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// How many events of `kind` each dossier has (for checks and tools).
    pub async fn kind_counts(&self, kind: &str) -> anyhow::Result<HashMap<String, u64>> {
        let rows = sqlx::query(
            "SELECT dossier_id, CAST(COUNT(*) AS BIGINT) FROM events WHERE kind = $1 GROUP BY dossier_id",
        )
        .bind(kind)
        .fetch_all(&self.pool)
        .await
        .context("count events by dossier")?;
        rows.into_iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>(0)?,
                    u64::try_from(row.try_get::<i64, _>(1)?).unwrap_or(0),
                ))
            })
            .collect()
    }

    /// How many dossiers have a running clock.
    pub async fn open_deadlines(&self) -> anyhow::Result<u64> {
        let n: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM deadlines")
            .fetch_one(&self.pool)
            .await
            .context("count deadlines")?
            .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The last position taken, 0 for an empty log.
    pub async fn head(&self) -> anyhow::Result<u64> {
        let head: i64 =
            sqlx::query("SELECT CAST(COALESCE(MAX(position), 0) AS BIGINT) FROM events")
                .fetch_one(&self.pool)
                .await
                .context("read the log's head")?
                .try_get(0)?;
        Ok(u64::try_from(head).unwrap_or(0))
    }

    /// How many events the log holds.
    pub async fn count(&self) -> anyhow::Result<u64> {
        let n: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM events")
            .fetch_one(&self.pool)
            .await
            .context("count events")?
            .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub async fn close(&self) {
        if let Some(pg) = &self.pg {
            pg.close().await;
        }
        self.pool.close().await;
    }
}

async fn append_postgres(
    pg: &sqlx::PgPool,
    events: &[NewEvent],
    replies: &[NewReply],
    deadlines: &[DeadlineChange],
) -> Result<u64, AppendError> {
    let mut cleared = Vec::new();
    let (mut set_ids, mut set_due, mut set_at) = (Vec::new(), Vec::new(), Vec::new());
    for change in deadlines {
        match change {
            DeadlineChange::Set {
                dossier_id,
                due_at,
                deadline_at,
            } => {
                set_ids.push(dossier_id.as_str());
                set_due.push(*due_at);
                set_at.push(*deadline_at);
            }
            DeadlineChange::Clear { dossier_id } => cleared.push(dossier_id.as_str()),
        }
    }
    let result = sqlx::query(APPEND_POSTGRES)
        .bind(events.len() as i64)
        .bind(column(events, |e| e.event_id.as_str()))
        .bind(column(events, |e| e.dossier_id.as_str()))
        .bind(column(events, |e| e.version as i64))
        .bind(column(events, |e| e.kind))
        .bind(column(events, |e| e.recorded_at))
        .bind(column(events, |e| e.payload.as_slice()))
        .bind(column(replies, |r| r.request_id.as_str()))
        .bind(column(replies, |r| r.event_index as i64))
        .bind(column(replies, |r| r.reply.as_slice()))
        .bind(column(replies, |r| fingerprint_column(r.fingerprint)))
        .bind(cleared)
        .bind(set_ids)
        .bind(set_due)
        .bind(set_at)
        .fetch_one(pg)
        .await;
    match result {
        Ok(row) => {
            let base: i64 = row.try_get(0).context("take positions")?;
            Ok(u64::try_from(base).unwrap_or(0) + 1)
        }
        // Another writer appended the same (dossier, version), or answered
        // the same request id, first.
        Err(e) if is_unique_violation(&e) => Err(AppendError::Conflict),
        Err(e) => Err(anyhow::Error::new(e).context("append events").into()),
    }
}

/// One append on SQLite, in a transaction of `conn`.
async fn append_sqlite(
    backend: Backend,
    conn: &mut sqlx::AnyConnection,
    events: &[NewEvent],
    replies: &[NewReply],
    deadlines: &[DeadlineChange],
) -> Result<u64, AppendError> {
    use sqlx::Connection as _;
    let mut tx = conn.begin().await.context("begin an append")?;
    let first = take_positions(&mut tx, events.len()).await?;
    insert_events(backend, &mut tx, first, events).await?;
    insert_replies(backend, &mut tx, first, replies).await?;
    write_deadlines(backend, &mut tx, deadlines).await?;
    tx.commit().await.context("commit the append")?;
    Ok(first)
}

/// Takes `count` positions from the head row and returns the first.
async fn take_positions(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    count: usize,
) -> anyhow::Result<u64> {
    // Taking positions locks the one head row until commit: a second
    // writer (another intake instance) waits here, so positions follow
    // commit order and a reader never skips an event committed late.
    let head: i64 =
        sqlx::query("UPDATE log_head SET position = position + $1 WHERE id = 1 RETURNING position")
            .bind(count as i64)
            .fetch_one(&mut **tx)
            .await
            .context("take positions")?
            .try_get(0)
            .context("take positions")?;
    let head = u64::try_from(head)
        .unwrap_or(0)
        .saturating_sub(count as u64);
    Ok(head + 1)
}

/// Inserts `events` from position `first`, 1,000 rows a statement.
async fn insert_events(
    backend: Backend,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    first: u64,
    events: &[NewEvent],
) -> Result<(), AppendError> {
    for (offset, chunk) in events.chunks(1000).enumerate() {
        let base = first + (offset * 1000) as u64;
        let sql = format!(
            "INSERT INTO events (position, event_id, dossier_id, version, kind, recorded_at, payload) VALUES {}",
            values_placeholders(backend, chunk.len(), 7)
        );
        let mut args = AnyArguments::default();
        for (i, e) in chunk.iter().enumerate() {
            push(&mut args, (base + i as u64) as i64)?;
            push(&mut args, e.event_id.as_str())?;
            push(&mut args, e.dossier_id.as_str())?;
            push(&mut args, e.version as i64)?;
            push(&mut args, e.kind)?;
            push(&mut args, e.recorded_at)?;
            push(&mut args, e.payload.as_slice())?;
        }
        let result = sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
            .persistent(false)
            .execute(&mut **tx)
            .await;
        if let Err(e) = result {
            if is_unique_violation(&e) {
                return Err(AppendError::Conflict);
            }
            return Err(anyhow::Error::new(e).context("insert events").into());
        }
    }
    Ok(())
}

/// Stores each reply beside the position of its event, 1,000 rows a
/// statement.
async fn insert_replies(
    backend: Backend,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    first: u64,
    replies: &[NewReply],
) -> Result<(), AppendError> {
    for chunk in replies.chunks(1000) {
        let sql = format!(
            "INSERT INTO command_replies (request_id, position, reply, fingerprint) VALUES {}",
            values_placeholders(backend, chunk.len(), 4)
        );
        let mut args = AnyArguments::default();
        for r in chunk {
            push(&mut args, r.request_id.as_str())?;
            push(&mut args, (first + r.event_index as u64) as i64)?;
            push(&mut args, r.reply.as_slice())?;
            push(&mut args, fingerprint_column(r.fingerprint))?;
        }
        let result = sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
            .persistent(false)
            .execute(&mut **tx)
            .await;
        if let Err(e) = result {
            if is_unique_violation(&e) {
                // Another instance answered the same request id first.
                return Err(AppendError::Conflict);
            }
            return Err(anyhow::Error::new(e).context("store replies").into());
        }
    }
    Ok(())
}

/// Applies deadline changes inside an append's transaction.
async fn write_deadlines(
    backend: Backend,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    changes: &[DeadlineChange],
) -> anyhow::Result<()> {
    let mut set = Vec::new();
    let mut clear = Vec::new();
    for change in changes {
        match change {
            DeadlineChange::Set {
                dossier_id,
                due_at,
                deadline_at,
            } => set.push((dossier_id.as_str(), *due_at, *deadline_at)),
            DeadlineChange::Clear { dossier_id } => clear.push(dossier_id.as_str()),
        }
    }
    for chunk in clear.chunks(1000) {
        let sql = format!(
            "DELETE FROM deadlines WHERE dossier_id IN ({})",
            list_placeholders(backend, chunk.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut **tx).await.context("clear deadlines")?;
    }
    for chunk in set.chunks(1000) {
        let sql = format!(
            "INSERT INTO deadlines (dossier_id, due_at, deadline_at) VALUES {} \
             ON CONFLICT (dossier_id) DO UPDATE SET due_at = excluded.due_at, deadline_at = excluded.deadline_at",
            values_placeholders(backend, chunk.len(), 3)
        );
        let mut args = AnyArguments::default();
        for (dossier_id, due_at, deadline_at) in chunk {
            push(&mut args, *dossier_id)?;
            push(&mut args, *due_at)?;
            push(&mut args, *deadline_at)?;
        }
        sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
            .persistent(false)
            .execute(&mut **tx)
            .await
            .context("set deadlines")?;
    }
    Ok(())
}

/// Whether an append failed because the database's disk is full:
/// SQLite's `SQLITE_FULL` (13), PostgreSQL's `disk_full` (53100), or an
/// I/O error saying so, anywhere in the error's chain. An operator must
/// make room; a retry before that fails the same way.
pub fn is_disk_full(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
        .any(|e| match e {
            sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("13" | "53100")),
            sqlx::Error::Io(io) => io.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}
