//! The dossier state machine through the `domain` crate's public API, in the
//! given / when / then style of cqrs-es: given the events already recorded,
//! when a command arrives at an instant, then exactly this payload (or this
//! refusal) comes out.
//!
//! The transition table below lists every (status, command) pair. Adding a
//! `Status` or `Command` variant breaks the exhaustive `match`es that index it,
//! and changing a rule breaks the table, so neither can slip by unnoticed.

use domain::{
    Channel, Command, Dossier, Event, EventKind, LocalDay, Payload, Procedure, Rating, RatingScale,
    Refusal, Status, Timeliness, Timestamp, decide,
};
use proptest::prelude::*;

const DOSSIER: &str = "H29.22-240304-0001";
const OFFICE: &str = "000.00.22.H29";
const OTHER_OFFICE: &str = "000.00.23.H29";
const PROVINCE: &str = "01";
const MICROS_PER_MINUTE: i64 = 60 * 1_000_000;

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// `hour:minute` local time (UTC+7) on `day/month/year`.
fn local(year: i32, month: u8, day: u8, hour: u8, minute: u8) -> Timestamp {
    let day = LocalDay::from_ymd(year, month, day).expect("a real date");
    Timestamp::at_local(day, hour, minute)
}

fn procedure() -> Procedure {
    Procedure {
        code: "1.004227".into(),
        field: "Đất đai".into(),
    }
}

fn submitted(channel: Channel) -> Payload {
    Payload::Submitted {
        procedure: procedure(),
        channel,
    }
}

fn received(due_at: Timestamp) -> Payload {
    Payload::Received {
        procedure: procedure(),
        channel: Channel::InPerson,
        due_at,
    }
}

fn supplement_requested() -> Payload {
    Payload::SupplementRequested {
        reason: "thiếu bản sao sổ hộ khẩu".into(),
    }
}

fn processed(timeliness: Timeliness, due_at: Timestamp) -> Payload {
    Payload::Processed { timeliness, due_at }
}

fn survey() -> Payload {
    Payload::SurveyRecorded {
        scale: RatingScale::Satisfaction,
        rating: Rating::Top,
        comment: "nhanh".into(),
    }
}

fn event(version: u64, at: Timestamp, payload: Payload) -> Event {
    Event {
        event_id: format!("evt-{version}"),
        dossier_id: DOSSIER.into(),
        office_code: OFFICE.into(),
        province_code: PROVINCE.into(),
        version,
        occurred_at: at,
        recorded_at: at,
        actor: "clerk-1".into(),
        request_id: format!("req-{version}"),
        payload,
    }
}

fn submit_online(channel: Channel) -> Command {
    Command::SubmitOnline {
        office_code: OFFICE.into(),
        province_code: PROVINCE.into(),
        procedure: procedure(),
        channel,
    }
}

fn receive(office_code: &str, due_at: Timestamp) -> Command {
    Command::Receive {
        office_code: office_code.into(),
        province_code: PROVINCE.into(),
        procedure: procedure(),
        channel: Channel::InPerson,
        due_at: Some(due_at),
    }
}

fn reschedule(due_at: Timestamp) -> Command {
    Command::Reschedule {
        due_at,
        reason: "cần xác minh thực địa".into(),
    }
}

fn record_survey() -> Command {
    Command::RecordSurvey {
        scale: RatingScale::Satisfaction,
        rating: Rating::Top,
        comment: "nhanh".into(),
    }
}

// ---------------------------------------------------------------------------
// given / when / then
// ---------------------------------------------------------------------------

/// The events already recorded for the dossier.
struct Given {
    state: Option<Dossier>,
}

/// A command decided against the given state.
struct Then {
    state: Option<Dossier>,
    command: Command,
    at: Timestamp,
    result: Result<Payload, Refusal>,
}

fn given_no_previous_events() -> Given {
    Given { state: None }
}

/// Folds `history` (occurred_at, payload) into a dossier, versions 1, 2, ...
#[track_caller]
fn given(history: &[(Timestamp, Payload)]) -> Given {
    let mut state = None;
    for (i, (at, payload)) in history.iter().enumerate() {
        let version = u64::try_from(i).expect("small") + 1;
        let next = Dossier::apply(state, &event(version, *at, payload.clone()));
        state = Some(next.unwrap_or_else(|e| panic!("given history does not apply: {e}")));
    }
    Given { state }
}

impl Given {
    fn dossier(&self) -> &Dossier {
        self.state.as_ref().expect("a dossier")
    }

    fn when(&self, command: Command, at: Timestamp) -> Then {
        let result = decide(DOSSIER, self.state.as_ref(), &command, at);
        Then {
            state: self.state.clone(),
            command,
            at,
            result,
        }
    }
}

impl Then {
    /// Asserts the command produced exactly `expected`; returns the state with
    /// that event applied, for chaining.
    #[track_caller]
    fn then_expect(self, expected: Payload) -> Dossier {
        match &self.result {
            Ok(payload) => assert_eq!(payload, &expected, "{:?}", self.command),
            Err(refusal) => panic!(
                "expected {expected:?} from {:?}, got refusal {refusal:?}",
                self.command
            ),
        }
        let version = self.state.as_ref().map_or(1, |d| d.version + 1);
        let applied = Dossier::apply(self.state, &event(version, self.at, expected))
            .expect("an accepted payload applies");
        assert_eq!(applied.version, version);
        applied
    }

    /// Asserts the command was accepted; returns the payload.
    #[track_caller]
    fn then_accepted(self) -> Payload {
        match self.result {
            Ok(payload) => payload,
            Err(refusal) => panic!(
                "expected {:?} to be accepted, got {refusal:?}",
                self.command
            ),
        }
    }

    /// Asserts exactly this refusal.
    #[track_caller]
    fn then_refused(self, expected: &Refusal) {
        assert_eq!(self.result.as_ref(), Err(expected), "{:?}", self.command);
    }

    /// Asserts `Refusal::InvalidTransition` for this dossier and this command's
    /// action; returns its reason.
    #[track_caller]
    fn then_invalid_transition(self) -> String {
        match self.result {
            Err(Refusal::InvalidTransition {
                dossier_id,
                action,
                reason,
            }) => {
                assert_eq!(dossier_id, DOSSIER);
                assert_eq!(action, self.command.action());
                reason
            }
            other => panic!(
                "expected InvalidTransition from {:?}, got {other:?}",
                self.command
            ),
        }
    }

    /// Asserts `Refusal::InvalidField` naming `field`; returns its reason.
    #[track_caller]
    fn then_invalid_field(self, field: &str) -> String {
        match self.result {
            Err(Refusal::InvalidField { field: f, reason }) if f == field => reason,
            other => panic!(
                "expected InvalidField({field}) from {:?}, got {other:?}",
                self.command
            ),
        }
    }
}

impl From<Dossier> for Given {
    fn from(d: Dossier) -> Self {
        Given { state: Some(d) }
    }
}

// ---------------------------------------------------------------------------
// The transition table: every (status, command) pair
// ---------------------------------------------------------------------------

/// Row index of a state; exhaustive, so a new `Status` does not compile until
/// the table has a row for it.
fn row(status: Option<Status>) -> usize {
    match status {
        None => 0,
        Some(Status::Submitted) => 1,
        Some(Status::Received) => 2,
        Some(Status::Paused) => 3,
        Some(Status::Processed) => 4,
        Some(Status::Returned) => 5,
        Some(Status::Refused) => 6,
        Some(Status::Withdrawn) => 7,
        Some(Status::Stopped) => 8,
    }
}

/// Column index of a command; exhaustive, so a new `Command` does not compile
/// until the table has a column for it.
fn column(command: &Command) -> usize {
    match command {
        Command::SubmitOnline { .. } => 0,
        Command::Receive { .. } => 1,
        Command::RefuseAtIntake { .. } => 2,
        Command::RequestSupplement { .. } => 3,
        Command::ProvideSupplement { .. } => 4,
        Command::Reschedule { .. } => 5,
        Command::RecordResult => 6,
        Command::ReturnResult => 7,
        Command::Withdraw { .. } => 8,
        Command::Stop { .. } => 9,
        Command::RecordSurvey { .. } => 10,
        Command::MarkLate => 11,
        // Catalog commands are decided by `decide_procedure` (tests/procedure.rs).
        Command::Procedure(_) => 12,
    }
}

const STATES: [Option<Status>; 9] = [
    None,
    Some(Status::Submitted),
    Some(Status::Received),
    Some(Status::Paused),
    Some(Status::Processed),
    Some(Status::Returned),
    Some(Status::Refused),
    Some(Status::Withdrawn),
    Some(Status::Stopped),
];

/// When the table's commands are issued: after the due date's local day, so
/// that MarkLate is due on an open dossier.
fn table_at() -> Timestamp {
    local(2024, 3, 15, 9, 0)
}

fn table_due() -> Timestamp {
    local(2024, 3, 11, 17, 0)
}

/// One command of each variant, all valid field by field at `table_at()`.
fn all_commands() -> Vec<Command> {
    vec![
        submit_online(Channel::OnlineFull),
        receive(OFFICE, local(2024, 3, 29, 17, 0)),
        Command::RefuseAtIntake {
            reason: "không thuộc thẩm quyền".into(),
        },
        Command::RequestSupplement {
            reason: "thiếu giấy tờ".into(),
        },
        Command::ProvideSupplement { due_at: None },
        reschedule(local(2024, 3, 22, 17, 0)),
        Command::RecordResult,
        Command::ReturnResult,
        Command::Withdraw {
            reason: "công dân xin rút".into(),
        },
        Command::Stop {
            reason: "người nộp đã chết".into(),
        },
        record_survey(),
        Command::MarkLate,
    ]
}

/// A history that leaves the dossier in `status` (None: no history).
fn history_for(status: Option<Status>) -> Vec<(Timestamp, Payload)> {
    let sub = (local(2024, 3, 4, 7, 30), submitted(Channel::OnlineFull));
    let rec = (local(2024, 3, 4, 8, 0), received(table_due()));
    match status {
        None => vec![],
        Some(Status::Submitted) => vec![sub],
        Some(Status::Received) => vec![rec],
        Some(Status::Paused) => vec![rec, (local(2024, 3, 5, 9, 0), supplement_requested())],
        Some(Status::Processed) => vec![
            rec,
            (
                local(2024, 3, 8, 10, 0),
                processed(Timeliness::Early, table_due()),
            ),
        ],
        Some(Status::Returned) => vec![
            rec,
            (
                local(2024, 3, 8, 10, 0),
                processed(Timeliness::Early, table_due()),
            ),
            (local(2024, 3, 8, 14, 0), Payload::Returned),
        ],
        Some(Status::Refused) => vec![
            sub,
            (
                local(2024, 3, 4, 9, 0),
                Payload::RefusedAtIntake {
                    reason: "hồ sơ không hợp lệ".into(),
                },
            ),
        ],
        Some(Status::Withdrawn) => vec![
            rec,
            (
                local(2024, 3, 6, 9, 0),
                Payload::Withdrawn {
                    reason: "công dân xin rút".into(),
                },
            ),
        ],
        Some(Status::Stopped) => vec![
            rec,
            (
                local(2024, 3, 6, 9, 0),
                Payload::Stopped {
                    reason: "theo yêu cầu cơ quan".into(),
                },
            ),
        ],
    }
}

/// What a (state, command) pair must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Accepted: this event, leaving the dossier in this status.
    Go(EventKind, Status),
    /// Refused with `Refusal::InvalidTransition`.
    No,
}

use Expect::{Go, No};

fn go(kind: EventKind, status: Status) -> Expect {
    Go(kind, status)
}

/// The lifecycle of DESIGN.md, one row per state (in `STATES` order), one
/// column per command (in `all_commands()` order).
fn expected_table() -> [[Expect; 12]; 9] {
    use EventKind as K;
    use Status as S;
    [
        // None: only the two ways a dossier comes into being.
        [
            go(K::Submitted, S::Submitted),
            go(K::Received, S::Received),
            No,
            No,
            No,
            No,
            No,
            No,
            No,
            No,
            No,
            No,
        ],
        // Submitted: received, refused at intake or withdrawn.
        [
            No,
            go(K::Received, S::Received),
            go(K::RefusedAtIntake, S::Refused),
            No,
            No,
            No,
            No,
            No,
            go(K::Withdrawn, S::Withdrawn),
            No,
            No,
            No,
        ],
        // Received: the clock runs.
        [
            No,
            No,
            No,
            go(K::SupplementRequested, S::Paused),
            No,
            go(K::Rescheduled, S::Received),
            go(K::Processed, S::Processed),
            No,
            go(K::Withdrawn, S::Withdrawn),
            go(K::Stopped, S::Stopped),
            go(K::SurveyRecorded, S::Received),
            go(K::Late, S::Received),
        ],
        // Paused: waiting for the citizen.
        [
            No,
            No,
            No,
            No,
            go(K::SupplementProvided, S::Received),
            go(K::Rescheduled, S::Paused),
            No,
            No,
            go(K::Withdrawn, S::Withdrawn),
            go(K::Stopped, S::Stopped),
            go(K::SurveyRecorded, S::Paused),
            No,
        ],
        // Processed: only returning the result, or a survey.
        [
            No,
            No,
            No,
            No,
            No,
            No,
            No,
            go(K::Returned, S::Returned),
            No,
            No,
            go(K::SurveyRecorded, S::Processed),
            No,
        ],
        // Returned: only a survey.
        [
            No,
            No,
            No,
            No,
            No,
            No,
            No,
            No,
            No,
            No,
            go(K::SurveyRecorded, S::Returned),
            No,
        ],
        // Refused, Withdrawn, Stopped: final, nothing follows.
        [No; 12],
        [No; 12],
        [No; 12],
    ]
}

#[test]
fn table_indices_cover_every_state_and_command_once() {
    let rows: Vec<usize> = STATES.iter().map(|s| row(*s)).collect();
    assert_eq!(rows, (0..9).collect::<Vec<_>>());
    let columns: Vec<usize> = all_commands().iter().map(column).collect();
    assert_eq!(columns, (0..12).collect::<Vec<_>>());
}

#[test]
fn every_state_and_command_pair_follows_the_table() {
    let table = expected_table();
    let commands = all_commands();
    let at = table_at();
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for state in STATES {
        let g = given(&history_for(state));
        assert_eq!(
            g.state.as_ref().map(|d| d.status),
            state,
            "history_for({state:?})"
        );
        for command in &commands {
            let expected = table[row(state)][column(command)];
            let result = decide(DOSSIER, g.state.as_ref(), command, at);
            let actual = match &result {
                Ok(payload) => {
                    let version = g.state.as_ref().map_or(1, |d| d.version + 1);
                    let next =
                        Dossier::apply(g.state.clone(), &event(version, at, payload.clone()))
                            .expect("an accepted payload applies");
                    Go(payload.kind(), next.status)
                }
                Err(Refusal::InvalidTransition {
                    dossier_id, action, ..
                }) if dossier_id == DOSSIER && *action == command.action() => No,
                // No dossier yet: refused as unknown, not as a wrong state.
                Err(Refusal::UnknownDossier { dossier_id, action })
                    if state.is_none() && dossier_id == DOSSIER && *action == command.action() =>
                {
                    No
                }
                Err(other) => {
                    mismatches.push(format!(
                        "{state:?} + {command:?}: expected {expected:?}, got {other:?}"
                    ));
                    checked += 1;
                    continue;
                }
            };
            if actual != expected {
                mismatches.push(format!(
                    "{state:?} + {}: expected {expected:?}, got {actual:?} ({result:?})",
                    command.action()
                ));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 9 * 12);
    assert!(
        mismatches.is_empty(),
        "{} pair(s) differ from the lifecycle table:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn final_and_open_statuses_agree_with_the_table() {
    // A final status refuses every command; an open one is received and unresolved.
    let table = expected_table();
    for status in STATES.into_iter().flatten() {
        if status.is_final() {
            assert_eq!(table[row(Some(status))], [No; 12], "{status:?}");
        }
        assert_eq!(
            status.is_open(),
            matches!(status, Status::Received | Status::Paused),
            "{status:?}"
        );
    }
}

#[test]
fn an_online_submission_received_by_its_office_behaves_like_an_in_person_receipt() {
    let due = table_due();
    let d = given(&[(local(2024, 3, 4, 7, 30), submitted(Channel::OnlinePartial))])
        .when(receive(OFFICE, due), local(2024, 3, 4, 8, 0))
        .then_expect(received(due));
    assert_eq!(d.status, Status::Received);
    assert_eq!(d.received_at, Some(local(2024, 3, 4, 8, 0)));
    assert_eq!(d.due_at, Some(due));
    // Same row as a dossier received in person.
    let table = expected_table();
    for command in all_commands() {
        let expected = table[row(Some(Status::Received))][column(&command)];
        let accepted = decide(DOSSIER, Some(&d), &command, table_at()).is_ok();
        assert_eq!(accepted, matches!(expected, Go(..)), "{command:?}");
    }
}

#[test]
fn refusals_name_the_dossier_and_the_action() {
    let reason = given(&history_for(Some(Status::Returned)))
        .when(Command::ReturnResult, table_at())
        .then_invalid_transition();
    assert_eq!(reason, "is already returned to the citizen");
    let unknown = decide(DOSSIER, None, &Command::RecordResult, table_at()).unwrap_err();
    assert_eq!(
        unknown,
        Refusal::UnknownDossier {
            dossier_id: DOSSIER.into(),
            action: "record its result",
        }
    );
    assert_eq!(
        unknown.to_string(),
        format!("cannot record its result: dossier {DOSSIER} has not been received")
    );
    let refusal = decide(
        DOSSIER,
        given(&history_for(Some(Status::Stopped))).state.as_ref(),
        &Command::MarkLate,
        table_at(),
    )
    .unwrap_err();
    assert_eq!(
        refusal.to_string(),
        format!("cannot mark it late: dossier {DOSSIER} is stopped")
    );
}

// ---------------------------------------------------------------------------
// Timeliness by local date (UTC+7)
// ---------------------------------------------------------------------------

fn received_due(due: Timestamp) -> Given {
    given(&[(local(2024, 3, 4, 8, 0), received(due))])
}

#[test]
fn resolved_the_local_day_before_due_is_early() {
    let due = local(2024, 3, 11, 17, 0);
    received_due(due)
        .when(Command::RecordResult, local(2024, 3, 10, 23, 59))
        .then_expect(processed(Timeliness::Early, due));
}

#[test]
fn resolved_on_the_due_local_date_is_on_time_even_at_23_59() {
    let due = local(2024, 3, 11, 17, 0);
    for (hour, minute) in [(0, 0), (8, 0), (17, 0), (17, 1), (23, 59)] {
        received_due(due)
            .when(Command::RecordResult, local(2024, 3, 11, hour, minute))
            .then_expect(processed(Timeliness::OnTime, due));
    }
    // The last microsecond of the local day is still on time.
    let last = local(2024, 3, 12, 0, 0).plus_micros(-1);
    received_due(due)
        .when(Command::RecordResult, last)
        .then_expect(processed(Timeliness::OnTime, due));
}

#[test]
fn resolved_on_the_next_local_date_is_late() {
    let due = local(2024, 3, 11, 17, 0);
    received_due(due)
        .when(Command::RecordResult, local(2024, 3, 12, 0, 0))
        .then_expect(processed(Timeliness::Late, due));
    received_due(due)
        .when(Command::RecordResult, local(2024, 4, 1, 9, 0))
        .then_expect(processed(Timeliness::Late, due));
}

#[test]
fn timeliness_follows_the_local_date_not_the_utc_date() {
    // Due 2024-03-11 17:00 local = 2024-03-11 10:00 UTC.
    let due = Timestamp::from_unix_seconds(1_710_151_200);
    assert_eq!(due, local(2024, 3, 11, 17, 0));

    // 2024-03-11 23:00 UTC: the same UTC date as the due date, but already
    // 2024-03-12 06:00 in Vietnam, so late.
    let next_local_morning = Timestamp::from_unix_seconds(1_710_198_000);
    assert_eq!(next_local_morning, local(2024, 3, 12, 6, 0));
    received_due(due)
        .when(Command::RecordResult, next_local_morning)
        .then_expect(processed(Timeliness::Late, due));

    // 2024-03-10 22:00 UTC: the UTC date before the due date, but already
    // 2024-03-11 05:00 in Vietnam, so on time rather than early.
    let due_local_dawn = Timestamp::from_unix_seconds(1_710_108_000);
    assert_eq!(due_local_dawn, local(2024, 3, 11, 5, 0));
    received_due(due)
        .when(Command::RecordResult, due_local_dawn)
        .then_expect(processed(Timeliness::OnTime, due));

    // Due 2024-03-11 06:00 local = 2024-03-10 23:00 UTC; resolved 2024-03-11
    // 23:59 local = 2024-03-11 16:59 UTC, a later UTC date: still on time.
    let early_due = Timestamp::from_unix_seconds(1_710_111_600);
    assert_eq!(early_due, local(2024, 3, 11, 6, 0));
    let late_evening = Timestamp::from_unix_seconds(1_710_176_340);
    assert_eq!(late_evening, local(2024, 3, 11, 23, 59));
    received_due(early_due)
        .when(Command::RecordResult, late_evening)
        .then_expect(processed(Timeliness::OnTime, early_due));
    // One minute later is 2024-03-12 00:00 local: late.
    received_due(early_due)
        .when(
            Command::RecordResult,
            Timestamp::from_unix_seconds(1_710_176_400),
        )
        .then_expect(processed(Timeliness::Late, early_due));
}

#[test]
fn judge_compares_local_dates() {
    let due = local(2019, 12, 31, 17, 0);
    assert_eq!(
        Timeliness::judge(local(2019, 12, 30, 23, 59), due),
        Timeliness::Early
    );
    assert_eq!(
        Timeliness::judge(local(2019, 12, 31, 0, 0), due),
        Timeliness::OnTime
    );
    assert_eq!(
        Timeliness::judge(local(2019, 12, 31, 23, 59), due),
        Timeliness::OnTime
    );
    // 2019-12-31 20:00 UTC is 2020-01-01 03:00 local: late, and in another year.
    assert_eq!(
        Timeliness::judge(Timestamp::from_unix_seconds(1_577_822_400), due),
        Timeliness::Late
    );
}

#[test]
fn a_processed_dossier_keeps_its_timeliness() {
    let due = local(2024, 3, 11, 17, 0);
    let d = received_due(due)
        .when(Command::RecordResult, local(2024, 3, 12, 8, 0))
        .then_expect(processed(Timeliness::Late, due));
    assert_eq!(d.timeliness, Some(Timeliness::Late));
    let d = Given::from(d)
        .when(Command::ReturnResult, local(2024, 3, 12, 9, 0))
        .then_expect(Payload::Returned);
    assert_eq!(d.status, Status::Returned);
    assert_eq!(d.timeliness, Some(Timeliness::Late));
}

// ---------------------------------------------------------------------------
// Supplements move the due date by the pause
// ---------------------------------------------------------------------------

#[test]
fn a_supplement_without_a_due_date_moves_it_by_exactly_the_paused_working_time() {
    let due = local(2024, 3, 11, 17, 0);
    let paused_at = local(2024, 3, 5, 9, 0);
    let provided_at = local(2024, 3, 8, 14, 37).plus_micros(123_456);
    // Tue 9:00–17:00 (6 h), Wed and Thu (8 h each), Fri 7:00–14:37 (5 h 37 min).
    let pause = (27 * 60 + 37) * MICROS_PER_MINUTE + 123_456;
    let calendar = calendar::Calendar::vietnam();
    assert_eq!(
        calendar.working_time_between(paused_at.micros(), provided_at.micros()),
        pause
    );
    let expected_due = Timestamp::from_micros(calendar.add_working(due.micros(), pause));

    let d = given(&[
        (local(2024, 3, 4, 8, 0), received(due)),
        (paused_at, supplement_requested()),
    ])
    .when(Command::ProvideSupplement { due_at: None }, provided_at)
    .then_expect(Payload::SupplementProvided {
        due_at: expected_due,
    });
    assert_eq!(d.status, Status::Received);
    assert_eq!(d.paused_at, None);
    assert_eq!(d.due_at, Some(expected_due));

    // The result is then judged against the moved due date.
    // 27 h 37 min of working time after Mon 11/03 17:00: Tue, Wed, Thu (24 h),
    // then Fri 15/03 7:00 + 3 h 37 min = 10:37.
    assert_eq!(
        expected_due,
        local(2024, 3, 15, 10, 37).plus_micros(123_456)
    );
    Given::from(d.clone())
        .when(Command::RecordResult, local(2024, 3, 15, 23, 59))
        .then_expect(processed(Timeliness::OnTime, expected_due));
    Given::from(d)
        .when(Command::RecordResult, local(2024, 3, 16, 0, 0))
        .then_expect(processed(Timeliness::Late, expected_due));
}

#[test]
fn a_supplement_provided_at_the_instant_of_the_request_keeps_the_due_date() {
    let due = local(2024, 3, 11, 17, 0);
    let paused_at = local(2024, 3, 5, 9, 0);
    given(&[
        (local(2024, 3, 4, 8, 0), received(due)),
        (paused_at, supplement_requested()),
    ])
    .when(Command::ProvideSupplement { due_at: None }, paused_at)
    .then_expect(Payload::SupplementProvided { due_at: due });
}

#[test]
fn a_supplement_with_a_due_date_from_the_desk_uses_it_but_never_an_earlier_one() {
    let due = local(2024, 3, 11, 17, 0);
    let paused = given(&[
        (local(2024, 3, 4, 8, 0), received(due)),
        (local(2024, 3, 5, 9, 0), supplement_requested()),
    ]);
    let later = local(2024, 3, 14, 17, 0);
    paused
        .when(
            Command::ProvideSupplement {
                due_at: Some(later),
            },
            local(2024, 3, 6, 9, 0),
        )
        .then_expect(Payload::SupplementProvided { due_at: later });
    paused
        .when(
            Command::ProvideSupplement { due_at: Some(due) },
            local(2024, 3, 6, 9, 0),
        )
        .then_expect(Payload::SupplementProvided { due_at: due });
    paused
        .when(
            Command::ProvideSupplement {
                due_at: Some(due.plus_micros(-1)),
            },
            local(2024, 3, 6, 9, 0),
        )
        .then_invalid_field("due_at");
}

#[test]
fn a_second_pause_moves_the_due_date_again() {
    let due = local(2024, 3, 11, 17, 0);
    let d = given(&[
        (local(2024, 3, 4, 8, 0), received(due)),
        (local(2024, 3, 5, 9, 0), supplement_requested()),
        (
            local(2024, 3, 6, 9, 0),
            Payload::SupplementProvided {
                due_at: local(2024, 3, 12, 17, 0),
            },
        ),
    ])
    .when(
        Command::RequestSupplement {
            reason: "thiếu trích lục".into(),
        },
        local(2024, 3, 7, 10, 0),
    )
    .then_expect(supplement_requested_with("thiếu trích lục"));
    assert_eq!(d.paused_at, Some(local(2024, 3, 7, 10, 0)));
    Given::from(d)
        .when(
            Command::ProvideSupplement { due_at: None },
            local(2024, 3, 7, 16, 0),
        )
        .then_expect(Payload::SupplementProvided {
            // 10:00–11:30 and 13:30–16:00: 4 working hours after Tue 12/03 17:00.
            due_at: local(2024, 3, 13, 11, 0),
        });
}

fn supplement_requested_with(reason: &str) -> Payload {
    Payload::SupplementRequested {
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------
// Reschedule: once, and only later
// ---------------------------------------------------------------------------

#[test]
fn reschedule_moves_the_due_date_later_once() {
    let due = local(2024, 3, 11, 17, 0);
    let new_due = local(2024, 3, 18, 17, 0);
    let d = received_due(due)
        .when(reschedule(new_due), local(2024, 3, 10, 9, 0))
        .then_expect(Payload::Rescheduled {
            due_at: new_due,
            reason: "cần xác minh thực địa".into(),
        });
    assert!(d.rescheduled);
    assert_eq!(d.due_at, Some(new_due));
    assert_eq!(d.status, Status::Received);

    // Never a second time, not even to a later date.
    let reason = Given::from(d.clone())
        .when(
            reschedule(local(2024, 3, 25, 17, 0)),
            local(2024, 3, 11, 9, 0),
        )
        .then_invalid_transition();
    assert!(reason.contains("only once"), "{reason}");

    // Still not after a pause and a supplement.
    let d = Given::from(d)
        .when(
            Command::RequestSupplement {
                reason: "thiếu giấy tờ".into(),
            },
            local(2024, 3, 12, 9, 0),
        )
        .then_expect(supplement_requested_with("thiếu giấy tờ"));
    Given::from(d.clone())
        .when(
            reschedule(local(2024, 3, 30, 17, 0)),
            local(2024, 3, 12, 10, 0),
        )
        .then_invalid_transition();
    let d = Given::from(d)
        .when(
            Command::ProvideSupplement { due_at: None },
            local(2024, 3, 13, 9, 0),
        )
        .then_accepted();
    let Payload::SupplementProvided { due_at } = d else {
        panic!("{d:?}")
    };
    assert_eq!(due_at, local(2024, 3, 19, 17, 0));
}

#[test]
fn reschedule_to_the_same_or_an_earlier_date_is_an_invalid_field() {
    let due = local(2024, 3, 11, 17, 0);
    let g = received_due(due);
    g.when(reschedule(due), local(2024, 3, 10, 9, 0))
        .then_invalid_field("due_at");
    g.when(reschedule(due.plus_micros(-1)), local(2024, 3, 10, 9, 0))
        .then_invalid_field("due_at");
    g.when(
        reschedule(local(2024, 3, 9, 17, 0)),
        local(2024, 3, 8, 9, 0),
    )
    .then_invalid_field("due_at");
    // One microsecond later is later.
    g.when(reschedule(due.plus_micros(1)), local(2024, 3, 10, 9, 0))
        .then_expect(Payload::Rescheduled {
            due_at: due.plus_micros(1),
            reason: "cần xác minh thực địa".into(),
        });
}

#[test]
fn a_refused_reschedule_does_not_use_up_the_one_allowed() {
    let due = local(2024, 3, 11, 17, 0);
    let g = received_due(due);
    g.when(reschedule(due), local(2024, 3, 10, 9, 0))
        .then_invalid_field("due_at");
    // Nothing was appended, so the state still allows one reschedule.
    assert!(!g.dossier().rescheduled);
    g.when(
        reschedule(local(2024, 3, 13, 17, 0)),
        local(2024, 3, 10, 9, 0),
    )
    .then_accepted();
}

#[test]
fn a_paused_dossier_may_be_rescheduled_and_stays_paused() {
    let due = local(2024, 3, 11, 17, 0);
    let new_due = local(2024, 3, 20, 17, 0);
    let paused_at = local(2024, 3, 5, 9, 0);
    let d = given(&[
        (local(2024, 3, 4, 8, 0), received(due)),
        (paused_at, supplement_requested()),
    ])
    .when(reschedule(new_due), local(2024, 3, 6, 9, 0))
    .then_expect(Payload::Rescheduled {
        due_at: new_due,
        reason: "cần xác minh thực địa".into(),
    });
    assert_eq!(d.status, Status::Paused);
    assert_eq!(d.paused_at, Some(paused_at));
    // The pause then moves the rescheduled date.
    Given::from(d)
        .when(
            Command::ProvideSupplement { due_at: None },
            local(2024, 3, 7, 9, 0),
        )
        .then_expect(Payload::SupplementProvided {
            due_at: local(2024, 3, 22, 17, 0),
        });
}

// ---------------------------------------------------------------------------
// Survey: once
// ---------------------------------------------------------------------------

#[test]
fn a_survey_is_recorded_only_once() {
    let due = local(2024, 3, 11, 17, 0);
    let d = received_due(due)
        .when(record_survey(), local(2024, 3, 5, 9, 0))
        .then_expect(survey());
    assert!(d.surveyed);
    let reason = Given::from(d.clone())
        .when(
            Command::RecordSurvey {
                scale: RatingScale::Quality,
                rating: Rating::Bottom,
                comment: String::new(),
            },
            local(2024, 3, 6, 9, 0),
        )
        .then_invalid_transition();
    assert!(reason.contains("already has a survey"), "{reason}");

    // Not even once the result is returned.
    let d = Given::from(d)
        .when(Command::RecordResult, local(2024, 3, 7, 9, 0))
        .then_expect(processed(Timeliness::Early, due));
    let d = Given::from(d)
        .when(Command::ReturnResult, local(2024, 3, 7, 10, 0))
        .then_expect(Payload::Returned);
    Given::from(d)
        .when(record_survey(), local(2024, 3, 8, 9, 0))
        .then_invalid_transition();
}

#[test]
fn a_survey_after_the_return_is_recorded_once() {
    let d = given(&history_for(Some(Status::Returned)))
        .when(record_survey(), table_at())
        .then_expect(survey());
    Given::from(d)
        .when(record_survey(), table_at())
        .then_invalid_transition();
}

// ---------------------------------------------------------------------------
// MarkLate: after the due date's local day, once per due date
// ---------------------------------------------------------------------------

#[test]
fn mark_late_only_after_the_due_local_day_has_ended() {
    let due = local(2024, 3, 11, 17, 0);
    let g = received_due(due);
    for at in [
        local(2024, 3, 10, 9, 0),
        due,
        due.plus_micros(1),
        local(2024, 3, 11, 23, 59),
        local(2024, 3, 12, 0, 0).plus_micros(-1),
    ] {
        let reason = g.when(Command::MarkLate, at).then_invalid_transition();
        assert!(reason.contains("is not late"), "{at}: {reason}");
    }
    let d = g
        .when(Command::MarkLate, local(2024, 3, 12, 0, 0))
        .then_expect(Payload::Late { due_at: due });
    assert_eq!(d.late_for, Some(due));
    assert_eq!(d.status, Status::Received);
}

#[test]
fn mark_late_follows_the_local_date_not_the_utc_date() {
    // Due 2024-03-11 17:00 local (10:00 UTC). At 2024-03-11 23:00 UTC the UTC
    // date is still the due date, but Vietnam is at 2024-03-12 06:00: late.
    let due = Timestamp::from_unix_seconds(1_710_151_200);
    received_due(due)
        .when(
            Command::MarkLate,
            Timestamp::from_unix_seconds(1_710_198_000),
        )
        .then_expect(Payload::Late { due_at: due });
    // Due 2024-03-11 06:00 local (2024-03-10 23:00 UTC). At 2024-03-11 16:59
    // UTC the UTC date has passed, but Vietnam is still on 2024-03-11.
    let due = Timestamp::from_unix_seconds(1_710_111_600);
    received_due(due)
        .when(
            Command::MarkLate,
            Timestamp::from_unix_seconds(1_710_176_340),
        )
        .then_invalid_transition();
}

#[test]
fn mark_late_only_once_per_due_date_and_again_after_a_reschedule_passes() {
    let due = local(2024, 3, 11, 17, 0);
    let d = received_due(due)
        .when(Command::MarkLate, local(2024, 3, 12, 0, 5))
        .then_expect(Payload::Late { due_at: due });
    let reason = Given::from(d.clone())
        .when(Command::MarkLate, local(2024, 3, 13, 9, 0))
        .then_invalid_transition();
    assert!(reason.contains("already marked late"), "{reason}");

    let new_due = local(2024, 3, 20, 17, 0);
    let d = Given::from(d)
        .when(reschedule(new_due), local(2024, 3, 13, 9, 0))
        .then_expect(Payload::Rescheduled {
            due_at: new_due,
            reason: "cần xác minh thực địa".into(),
        });
    // The new due date has not passed yet.
    Given::from(d.clone())
        .when(Command::MarkLate, local(2024, 3, 20, 23, 59))
        .then_invalid_transition();
    // Once it has, late again, for the new date.
    let d = Given::from(d)
        .when(Command::MarkLate, local(2024, 3, 21, 0, 0))
        .then_expect(Payload::Late { due_at: new_due });
    assert_eq!(d.late_for, Some(new_due));
    Given::from(d)
        .when(Command::MarkLate, local(2024, 3, 22, 0, 0))
        .then_invalid_transition();
}

#[test]
fn mark_late_again_after_a_supplement_moves_the_due_date_and_that_passes() {
    let due = local(2024, 3, 11, 17, 0);
    let history = [
        (local(2024, 3, 4, 8, 0), received(due)),
        (local(2024, 3, 12, 0, 5), Payload::Late { due_at: due }),
        (local(2024, 3, 12, 9, 0), supplement_requested()),
    ];
    // While paused the clock does not run: never late.
    given(&history)
        .when(Command::MarkLate, local(2024, 3, 20, 9, 0))
        .then_invalid_transition();
    let d = given(&history)
        .when(
            Command::ProvideSupplement { due_at: None },
            local(2024, 3, 13, 9, 0),
        )
        .then_expect(Payload::SupplementProvided {
            due_at: local(2024, 3, 12, 17, 0),
        });
    let new_due = local(2024, 3, 12, 17, 0);
    Given::from(d)
        .when(Command::MarkLate, local(2024, 3, 13, 9, 1))
        .then_expect(Payload::Late { due_at: new_due });
}

#[test]
fn facts_dated_before_a_late_event_are_still_recorded() {
    // The monitor marked it late at the end of the due date; the desk then
    // enters what happened before that, from the paper file.
    let due = local(2024, 3, 11, 17, 0);
    let history = [
        (local(2024, 3, 4, 8, 0), received(due)),
        (local(2024, 3, 12, 0, 0), Payload::Late { due_at: due }),
    ];
    let g = given(&history);
    assert_eq!(g.dossier().last_occurred_at, local(2024, 3, 4, 8, 0));
    g.when(Command::RecordResult, local(2024, 3, 11, 15, 0))
        .then_expect(processed(Timeliness::OnTime, due));
    let d = given(&history)
        .when(supplement_requested_cmd(), local(2024, 3, 8, 9, 0))
        .then_expect(supplement_requested());
    assert_eq!(d.status, Status::Paused);
    // Still not before the last desk fact.
    Given::from(d)
        .when(Command::RecordResult, local(2024, 3, 8, 8, 0))
        .then_invalid_field("meta.occurred_at");
}

#[test]
fn a_late_dossier_can_still_be_processed_late() {
    let due = local(2024, 3, 11, 17, 0);
    given(&[
        (local(2024, 3, 4, 8, 0), received(due)),
        (local(2024, 3, 12, 0, 5), Payload::Late { due_at: due }),
    ])
    .when(Command::RecordResult, local(2024, 3, 12, 9, 0))
    .then_expect(processed(Timeliness::Late, due));
}

// ---------------------------------------------------------------------------
// Field checks
// ---------------------------------------------------------------------------

#[test]
fn a_command_before_the_previous_event_is_an_invalid_occurred_at() {
    for state in STATES.into_iter().flatten() {
        let history = history_for(Some(state));
        let last = history.iter().map(|(at, _)| *at).max().expect("history");
        let g = given(&history);
        assert_eq!(g.dossier().last_occurred_at, last);
        for command in all_commands() {
            // Checked before the state: even a final dossier says so.
            let reason = g
                .when(command.clone(), last.plus_micros(-1))
                .then_invalid_field("meta.occurred_at");
            assert!(reason.contains("before the dossier's previous event"));
        }
    }
}

#[test]
fn a_command_at_the_same_instant_as_the_previous_event_is_allowed() {
    let at = local(2024, 3, 4, 8, 0);
    let d = given(&[(at, received(table_due()))])
        .when(supplement_requested_cmd(), at)
        .then_expect(supplement_requested());
    Given::from(d)
        .when(Command::ProvideSupplement { due_at: None }, at)
        .then_expect(Payload::SupplementProvided {
            due_at: table_due(),
        });
}

fn supplement_requested_cmd() -> Command {
    Command::RequestSupplement {
        reason: "thiếu bản sao sổ hộ khẩu".into(),
    }
}

#[test]
fn receive_with_a_due_date_not_after_the_receipt_is_an_invalid_field() {
    let at = local(2024, 3, 4, 8, 0);
    let submitted_state = given(&[(local(2024, 3, 4, 7, 0), submitted(Channel::OnlineFull))]);
    for g in [given_no_previous_events(), submitted_state] {
        g.when(receive(OFFICE, at), at).then_invalid_field("due_at");
        g.when(receive(OFFICE, at.plus_micros(-1)), at)
            .then_invalid_field("due_at");
        g.when(receive(OFFICE, local(2024, 3, 1, 17, 0)), at)
            .then_invalid_field("due_at");
        g.when(receive(OFFICE, at.plus_micros(1)), at)
            .then_expect(received(at.plus_micros(1)));
    }
}

#[test]
fn submit_online_through_a_non_online_channel_is_an_invalid_field() {
    for channel in Channel::ALL {
        let then = given_no_previous_events().when(submit_online(channel), local(2024, 3, 4, 7, 0));
        if channel.is_online() {
            then.then_expect(submitted(channel));
        } else {
            then.then_invalid_field("channel");
        }
    }
    assert_eq!(
        Channel::ALL.iter().filter(|c| c.is_online()).count(),
        2,
        "online means partial or full"
    );
}

#[test]
fn receive_of_a_submission_at_another_office_is_refused() {
    let g = given(&[(local(2024, 3, 4, 7, 0), submitted(Channel::OnlineFull))]);
    let reason = g
        .when(receive(OTHER_OFFICE, table_due()), local(2024, 3, 4, 8, 0))
        .then_invalid_transition();
    assert!(
        reason.contains(OFFICE) && reason.contains(OTHER_OFFICE),
        "{reason}"
    );
    g.when(receive(OFFICE, table_due()), local(2024, 3, 4, 8, 0))
        .then_expect(received(table_due()));
}

#[test]
fn submit_online_of_an_existing_dossier_is_refused() {
    let reason = given(&history_for(Some(Status::Submitted)))
        .when(submit_online(Channel::OnlineFull), table_at())
        .then_invalid_transition();
    assert_eq!(reason, "already exists");
    given(&history_for(Some(Status::Received)))
        .when(receive(OFFICE, local(2024, 4, 1, 17, 0)), table_at())
        .then_refused(&Refusal::InvalidTransition {
            dossier_id: DOSSIER.into(),
            action: "receive it",
            reason: "already exists and is received and being processed".into(),
        });
}

#[test]
fn record_result_while_paused_asks_for_the_supplement_first() {
    let reason = given(&history_for(Some(Status::Paused)))
        .when(Command::RecordResult, table_at())
        .then_invalid_transition();
    assert!(reason.contains("supplement"), "{reason}");
}

// ---------------------------------------------------------------------------
// Dossier::apply
// ---------------------------------------------------------------------------

#[test]
fn apply_rejects_a_first_event_that_is_not_version_1() {
    for version in [0, 2, 7] {
        let e = event(version, local(2024, 3, 4, 8, 0), received(table_due()));
        let err = Dossier::apply(None, &e).unwrap_err();
        assert!(err.contains("does not follow version 0"), "{err}");
    }
}

#[test]
fn apply_rejects_version_gaps_and_repeats() {
    let d = given(&history_for(Some(Status::Received))).state.unwrap();
    assert_eq!(d.version, 1);
    for version in [0, 1, 3, 100] {
        let e = event(version, table_at(), supplement_requested());
        let err = Dossier::apply(Some(d.clone()), &e).unwrap_err();
        assert!(err.contains(DOSSIER), "{err}");
        assert!(err.contains(&format!("event version {version}")), "{err}");
    }
    let e = event(2, table_at(), supplement_requested());
    assert_eq!(Dossier::apply(Some(d), &e).unwrap().version, 2);
}

#[test]
fn apply_rejects_a_first_event_that_is_not_submitted_or_received() {
    let due = table_due();
    let others = [
        Payload::RefusedAtIntake { reason: "x".into() },
        supplement_requested(),
        Payload::SupplementProvided { due_at: due },
        Payload::Rescheduled {
            due_at: due,
            reason: "x".into(),
        },
        processed(Timeliness::OnTime, due),
        Payload::Returned,
        Payload::Withdrawn { reason: "x".into() },
        Payload::Stopped { reason: "x".into() },
        Payload::Late { due_at: due },
        survey(),
    ];
    for payload in others {
        let kind = payload.kind();
        let err = Dossier::apply(None, &event(1, table_at(), payload)).unwrap_err();
        assert!(err.contains(kind.as_str()), "{kind}: {err}");
        assert!(err.contains("not submitted or received"), "{err}");
    }
    let sub = Dossier::apply(None, &event(1, table_at(), submitted(Channel::OnlineFull))).unwrap();
    assert_eq!(sub.status, Status::Submitted);
    assert_eq!(sub.due_at, None);
    assert_eq!(sub.received_at, None);
    let rec = Dossier::apply(None, &event(1, table_at(), received(due))).unwrap();
    assert_eq!(rec.status, Status::Received);
    assert_eq!(rec.received_at, Some(table_at()));
    assert_eq!(rec.due_at, Some(due));
    assert_eq!(rec.office_code, OFFICE);
    assert_eq!(rec.province_code, PROVINCE);
    assert_eq!(rec.dossier_id, DOSSIER);
}

// ---------------------------------------------------------------------------
// Properties over random command sequences
// ---------------------------------------------------------------------------

/// A command with its times relative to the instant it is issued at.
#[derive(Clone, Debug)]
enum Spec {
    SubmitOnline(Channel),
    Receive {
        other_office: bool,
        channel: Channel,
        due_in_minutes: i64,
    },
    RefuseAtIntake,
    RequestSupplement,
    ProvideSupplement(Option<i64>),
    Reschedule(i64),
    RecordResult,
    ReturnResult,
    Withdraw,
    Stop,
    RecordSurvey(RatingScale, Rating),
    MarkLate,
}

impl Spec {
    fn command(&self, at: Timestamp) -> Command {
        let in_minutes = |m: i64| at.plus_micros(m * MICROS_PER_MINUTE);
        match self {
            Spec::SubmitOnline(channel) => submit_online(*channel),
            Spec::Receive {
                other_office,
                channel,
                due_in_minutes,
            } => Command::Receive {
                office_code: if *other_office { OTHER_OFFICE } else { OFFICE }.into(),
                province_code: PROVINCE.into(),
                procedure: procedure(),
                channel: *channel,
                due_at: Some(in_minutes(*due_in_minutes)),
            },
            Spec::RefuseAtIntake => Command::RefuseAtIntake { reason: "r".into() },
            Spec::RequestSupplement => Command::RequestSupplement { reason: "r".into() },
            Spec::ProvideSupplement(due) => Command::ProvideSupplement {
                due_at: due.map(in_minutes),
            },
            Spec::Reschedule(due) => Command::Reschedule {
                due_at: in_minutes(*due),
                reason: "r".into(),
            },
            Spec::RecordResult => Command::RecordResult,
            Spec::ReturnResult => Command::ReturnResult,
            Spec::Withdraw => Command::Withdraw { reason: "r".into() },
            Spec::Stop => Command::Stop { reason: "r".into() },
            Spec::RecordSurvey(scale, rating) => Command::RecordSurvey {
                scale: *scale,
                rating: *rating,
                comment: String::new(),
            },
            Spec::MarkLate => Command::MarkLate,
        }
    }
}

fn channel() -> impl Strategy<Value = Channel> {
    prop::sample::select(Channel::ALL.to_vec())
}

/// Due offsets from -1 day to +20 days, in minutes.
fn due_offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        1 => -1440i64..=0,
        6 => 1i64..=20 * 1440,
    ]
}

/// Commands that end a dossier are rarer, so that runs get past them.
fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        3 => channel().prop_map(Spec::SubmitOnline),
        3 => (prop::bool::weighted(0.2), channel(), due_offset()).prop_map(
            |(other_office, channel, due_in_minutes)| Spec::Receive {
                other_office,
                channel,
                due_in_minutes,
            }
        ),
        1 => Just(Spec::RefuseAtIntake),
        3 => Just(Spec::RequestSupplement),
        3 => prop::option::of(due_offset()).prop_map(Spec::ProvideSupplement),
        3 => due_offset().prop_map(Spec::Reschedule),
        3 => Just(Spec::RecordResult),
        3 => Just(Spec::ReturnResult),
        1 => Just(Spec::Withdraw),
        1 => Just(Spec::Stop),
        3 => (
            prop::sample::select(RatingScale::ALL.to_vec()),
            prop::sample::select(Rating::ALL.to_vec())
        )
            .prop_map(|(s, r)| Spec::RecordSurvey(s, r)),
        3 => Just(Spec::MarkLate),
    ]
}

/// How far the clock moves before a command: mostly forward, up to 5 days;
/// sometimes backward, to exercise the occurred_at check.
fn step() -> impl Strategy<Value = i64> {
    prop_oneof![
        10 => 0i64..=5 * 1440,
        1 => -600i64..0,
    ]
}

/// Runs `specs` through decide + apply from no dossier, checking every step;
/// returns the recorded events.
fn run(steps: &[(i64, Spec)]) -> Result<Vec<Event>, TestCaseError> {
    let mut state: Option<Dossier> = None;
    let mut events: Vec<Event> = Vec::new();
    let mut at = local(2024, 1, 2, 8, 0);
    for (advance, spec) in steps {
        at = at.plus_micros(advance * MICROS_PER_MINUTE);
        let command = spec.command(at);
        let result = decide(DOSSIER, state.as_ref(), &command, at);

        // (2) Nothing follows a final status.
        if let Some(d) = &state
            && d.status.is_final()
        {
            prop_assert!(
                result.is_err(),
                "{:?} accepted {command:?} after final status {:?}",
                result,
                d.status
            );
        }
        // Never before the previous event.
        if let Some(d) = &state
            && at < d.last_occurred_at
        {
            prop_assert!(
                matches!(
                    &result,
                    Err(Refusal::InvalidField {
                        field: "meta.occurred_at",
                        ..
                    })
                ),
                "{result:?}"
            );
        }

        let Ok(payload) = result else { continue };
        prop_assert_eq!(column(&command), kind_column(payload.kind()));

        match &payload {
            // (4) Timeliness is judged against the due date in force.
            Payload::Processed { timeliness, due_at } => {
                let before = state.as_ref().and_then(|d| d.due_at);
                prop_assert_eq!(Some(*due_at), before);
                prop_assert_eq!(*timeliness, Timeliness::judge(at, *due_at));
            }
            Payload::Late { due_at } => {
                let d = state.as_ref().expect("late needs a dossier");
                prop_assert_eq!(d.status, Status::Received);
                prop_assert_eq!(Some(*due_at), d.due_at);
                prop_assert!(at.local_day() > due_at.local_day());
                prop_assert_ne!(d.late_for, Some(*due_at));
            }
            Payload::Received { due_at, .. } => prop_assert!(*due_at > at),
            Payload::Submitted { channel, .. } => {
                prop_assert!(channel.is_online());
                prop_assert!(state.is_none());
            }
            Payload::SupplementProvided { due_at } => {
                let d = state.as_ref().expect("supplement needs a dossier");
                prop_assert!(Some(*due_at) >= d.due_at);
            }
            Payload::Rescheduled { due_at, .. } => {
                let d = state.as_ref().expect("reschedule needs a dossier");
                prop_assert!(Some(*due_at) > d.due_at);
            }
            _ => {}
        }

        let version = state.as_ref().map_or(1, |d| d.version + 1);
        let state_last = state.as_ref().map(|d| d.last_occurred_at);
        let e = event(version, at, payload);
        let next = Dossier::apply(state.take(), &e)
            .map_err(|err| TestCaseError::fail(format!("apply failed: {err}")))?;
        prop_assert_eq!(next.version, e.version);
        // Late (intake's observation) does not move the desk's clock.
        let expected_last = match (&e.payload, state_last) {
            (Payload::Late { .. }, Some(last)) => last,
            _ => at,
        };
        prop_assert_eq!(next.last_occurred_at, expected_last);
        events.push(e);
        state = Some(next);
    }
    Ok(events)
}

/// The column of the command that produces an event kind (exhaustive).
fn kind_column(kind: EventKind) -> usize {
    match kind {
        EventKind::Submitted => 0,
        EventKind::Received => 1,
        EventKind::RefusedAtIntake => 2,
        EventKind::SupplementRequested => 3,
        EventKind::SupplementProvided => 4,
        EventKind::Rescheduled => 5,
        EventKind::Processed => 6,
        EventKind::Returned => 7,
        EventKind::Withdrawn => 8,
        EventKind::Stopped => 9,
        EventKind::SurveyRecorded => 10,
        EventKind::Late => 11,
        EventKind::ProcedureRegistered
        | EventKind::ProcedureChanged
        | EventKind::ProcedureWithdrawn => 12,
    }
}

fn steps() -> impl Strategy<Value = Vec<(i64, Spec)>> {
    prop::collection::vec((step(), spec()), 1..60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn versions_are_consecutive_from_1(steps in steps()) {
        let events = run(&steps)?;
        for (i, e) in events.iter().enumerate() {
            prop_assert_eq!(e.version, u64::try_from(i).unwrap() + 1);
        }
        if let Some(first) = events.first() {
            prop_assert!(matches!(
                first.payload.kind(),
                EventKind::Submitted | EventKind::Received
            ));
        }
        // Replaying the recorded events rebuilds the same state.
        let mut replayed = None;
        for e in &events {
            replayed = Some(Dossier::apply(replayed, e).unwrap());
        }
        prop_assert_eq!(replayed.map(|d| d.version).unwrap_or(0), events.len() as u64);
    }

    #[test]
    fn nothing_is_accepted_after_a_final_status(steps in steps()) {
        // `run` asserts it at every step; here, also that a final event is last.
        let events = run(&steps)?;
        let finals = events.iter().position(|e| matches!(
            e.payload.kind(),
            EventKind::RefusedAtIntake | EventKind::Withdrawn | EventKind::Stopped
        ));
        if let Some(i) = finals {
            prop_assert_eq!(i, events.len() - 1);
        }
    }

    #[test]
    fn at_most_one_survey_and_one_reschedule(steps in steps()) {
        let events = run(&steps)?;
        let count = |k: EventKind| events.iter().filter(|e| e.payload.kind() == k).count();
        prop_assert!(count(EventKind::SurveyRecorded) <= 1);
        prop_assert!(count(EventKind::Rescheduled) <= 1);
        prop_assert!(count(EventKind::Submitted) <= 1);
        prop_assert!(count(EventKind::Received) <= 1);
        prop_assert!(count(EventKind::Processed) <= 1);
        prop_assert!(count(EventKind::Returned) <= 1);
    }

    #[test]
    fn processed_timeliness_is_judged_against_the_due_date_before_it(steps in steps()) {
        // `run` checks the payload against the state; here, against a replay.
        let events = run(&steps)?;
        let mut state: Option<Dossier> = None;
        for e in &events {
            if let Payload::Processed { timeliness, due_at } = &e.payload {
                let before = state.as_ref().and_then(|d| d.due_at).unwrap();
                prop_assert_eq!(*due_at, before);
                prop_assert_eq!(*timeliness, Timeliness::judge(e.occurred_at, before));
            }
            state = Some(Dossier::apply(state, e).unwrap());
        }
    }

    #[test]
    fn mark_late_is_accepted_exactly_from_the_deadline_on(steps in steps(), probe in -200_000i64..2_000_000) {
        // Whatever the history, the deadline the monitor sleeps until is the
        // first instant at which MarkLate is accepted, and there is none
        // when MarkLate is refused at every instant.
        let events = run(&steps)?;
        let mut state: Option<Dossier> = None;
        for e in &events {
            state = Some(Dossier::apply(state, e).unwrap());
        }
        let Some(d) = state else { return Ok(()) };
        let at = d.last_occurred_at.plus_micros(probe * 1_000_000);
        let accepted = decide(DOSSIER, Some(&d), &Command::MarkLate, at).is_ok();
        match d.deadline() {
            Some(deadline) => {
                prop_assert_eq!(accepted, at >= deadline && at >= d.last_occurred_at, "deadline {}, at {}", deadline, at);
                prop_assert_eq!(deadline, domain::end_of_due_date(d.due_at.unwrap()));
                prop_assert_eq!(deadline.local_day(), d.due_at.unwrap().local_day().succ());
                prop_assert_eq!(deadline.plus_micros(-1).local_day(), d.due_at.unwrap().local_day());
            }
            None => prop_assert!(!accepted),
        }
    }

    #[test]
    fn judge_is_by_local_day(resolved in -4_000_000_000i64..4_000_000_000, due in -4_000_000_000i64..4_000_000_000) {
        let (r, d) = (Timestamp::from_unix_seconds(resolved), Timestamp::from_unix_seconds(due));
        let expected = match r.local_day().cmp(&d.local_day()) {
            std::cmp::Ordering::Less => Timeliness::Early,
            std::cmp::Ordering::Equal => Timeliness::OnTime,
            std::cmp::Ordering::Greater => Timeliness::Late,
        };
        prop_assert_eq!(Timeliness::judge(r, d), expected);
        // Local day = UTC day of the instant shifted by +7 h.
        prop_assert_eq!(
            i64::from(r.local_day().days()),
            (resolved + 7 * 3600).div_euclid(86_400)
        );
    }
}
