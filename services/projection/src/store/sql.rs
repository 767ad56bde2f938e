//! The SQL both write paths share: each table's columns as a batch's rows
//! carry them, the conflict clauses that make a batch written again change
//! nothing twice, and the batch statements in the backend's dialect.

use sqlkit::{Backend, Column, select_from_json, texts_from_json};

/// Writes a consumer's checkpoint: `$1` consumer, `$2` stream sequence,
/// `$3` the stream's creation, `$4` the log position and `$5` the log, each
/// kept as it was when NULL (a parked events' replay or a hand-over knows
/// none of them).
pub(super) const WRITE_CHECKPOINT: &str = "INSERT INTO checkpoints (consumer, stream_seq, stream_created, log_position, log_id) \
    VALUES ($1, $2, $3, $4, $5) ON CONFLICT (consumer) DO UPDATE SET stream_seq = excluded.stream_seq, \
    stream_created = COALESCE(excluded.stream_created, checkpoints.stream_created), \
    log_position = COALESCE(excluded.log_position, checkpoints.log_position), \
    log_id = COALESCE(excluded.log_id, checkpoints.log_id)";

/// A dossier row's columns; `load_rows` reads them back by index, in this order.
pub(super) const DOSSIER_JSON: &[Column] = &[
    Column::text("dossier_id"),
    Column::text("office_code"),
    Column::text("province_code"),
    Column::text("procedure_code"),
    Column::text("field"),
    Column::int("channel"),
    Column::int("version"),
    Column::text("status"),
    Column::int("received_day"),
    Column::int("due_at"),
    Column::int("due_day"),
    Column::int("closed_day"),
    Column::int("resolved_day"),
    Column::int("timeliness"),
    Column::int("late_at"),
    Column::int("pauses"),
];

pub(super) const COUNTER_JSON: &[Column] = &[
    Column::text("office_code"),
    Column::int("day"),
    Column::text("procedure_code"),
    Column::int("channel"),
    Column::text("metric"),
    Column::text("province_code"),
    Column::text("field"),
    Column::int("n"),
];

pub(super) const PAUSE_JSON: &[Column] = &[
    Column::text("dossier_id"),
    Column::int("seq"),
    Column::int("from_day"),
    Column::int("until_day"),
];

pub(super) const LATE_FEED_JSON: &[Column] = &[
    Column::int("seq"),
    Column::int("change"),
    Column::text("dossier_id"),
    Column::text("office_code"),
    Column::text("province_code"),
    Column::text("procedure_code"),
    Column::text("field"),
    Column::int("channel"),
    Column::int("due_at"),
    Column::int("occurred_at"),
];

pub(super) const UPSERT_DOSSIER: &str = "ON CONFLICT (dossier_id) DO UPDATE SET \
    procedure_code = excluded.procedure_code, field = excluded.field, channel = excluded.channel, \
    version = excluded.version, status = excluded.status, received_day = excluded.received_day, \
    due_at = excluded.due_at, due_day = excluded.due_day, closed_day = excluded.closed_day, \
    resolved_day = excluded.resolved_day, timeliness = excluded.timeliness, \
    late_at = excluded.late_at, pauses = excluded.pauses";
pub(super) const ADD_COUNTER: &str = "ON CONFLICT (office_code, day, procedure_code, channel, metric) \
    DO UPDATE SET n = daily_counts.n + excluded.n";
pub(super) const RECORD_PAUSE: &str =
    "ON CONFLICT (dossier_id, seq) DO UPDATE SET until_day = excluded.until_day";

/// The batch statements, in the backend's dialect: each takes its rows as
/// one JSON parameter, so it is prepared once per connection and kept.
#[derive(Debug)]
pub(super) struct Statements {
    pub(super) load_dossiers: String,
    pub(super) load_held: String,
    pub(super) upsert_dossiers: String,
    pub(super) add_counters: String,
    pub(super) record_pauses: String,
    pub(super) append_late_feed: String,
}

impl Statements {
    pub(super) fn new(backend: Backend) -> Self {
        let names = |columns: &[Column]| {
            columns
                .iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let insert = |table: &str, columns: &[Column]| {
            format!(
                "INSERT INTO {table} ({}) {}",
                names(columns),
                select_from_json(backend, columns, 1)
            )
        };
        Self {
            load_dossiers: format!(
                "SELECT {} FROM dossiers WHERE dossier_id IN ({})",
                names(DOSSIER_JSON),
                texts_from_json(backend, 1)
            ),
            load_held: format!(
                "SELECT dossier_id, version, payload FROM held_events WHERE dossier_id IN ({}) ORDER BY dossier_id, version",
                texts_from_json(backend, 1)
            ),
            upsert_dossiers: format!("{} {UPSERT_DOSSIER}", insert("dossiers", DOSSIER_JSON)),
            add_counters: format!("{} {ADD_COUNTER}", insert("daily_counts", COUNTER_JSON)),
            record_pauses: format!("{} {RECORD_PAUSE}", insert("pauses", PAUSE_JSON)),
            append_late_feed: insert("late_feed", LATE_FEED_JSON),
        }
    }
}
