#!/usr/bin/env python3
"""A desk and a province system that are not ours: Python's grpcio, with stubs
generated now, from the workspace's .proto files, by grpcio-tools.

Run by tests/tests/foreign_client.rs against a running intake and projection:

    python3 tests/python/desk_client.py --intake 127.0.0.1:PORT \
        --projection 127.0.0.1:PORT --proto-dir proto/proto

Exits 0 and prints one summary line when every check holds; any failed check
raises, so the exit status is non-zero and the traceback says which.
Needs: pip install -r tests/python/requirements.txt
"""

import argparse
import datetime as dt
import importlib
import os
import sys
import tempfile
import time
import uuid

try:
    import grpc
    from grpc_tools import protoc
except ImportError as e:  # pragma: no cover - reported by the Rust test
    sys.stderr.write(
        f"desk_client.py: {e}; run `pip install -r tests/python/requirements.txt`\n"
    )
    sys.exit(3)

OFFICE = "PY-DESK"
PROVINCE = "BTH"
INTAKE_SERVICE = "motcua.intake.v1.Intake"
REPORTS_SERVICE = "motcua.reports.v1.Reports"
RPC_TIMEOUT = 10.0
POLL_FOR = 30.0

# grpc/health/v1/health.proto, the Check half. grpcio-tools does not ship it;
# it is written under another file name so that its Python module does not
# shadow the `grpc` package. The gRPC package and names are the standard ones.
HEALTH_PROTO = """
syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse {
  enum ServingStatus {
    UNKNOWN = 0;
    SERVING = 1;
    NOT_SERVING = 2;
    SERVICE_UNKNOWN = 3;
  }
  ServingStatus status = 1;
}
service Health {
  rpc Check(HealthCheckRequest) returns (HealthCheckResponse);
}
"""


def generate_stubs(proto_dir, out_dir):
    """Compiles our .proto files (and the health protocol) into out_dir."""
    health_dir = os.path.join(out_dir, "health_src")
    os.makedirs(os.path.join(health_dir, "foreign_health"))
    with open(
        os.path.join(health_dir, "foreign_health", "health.proto"), "w", encoding="utf-8"
    ) as f:
        f.write(HEALTH_PROTO)
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    files = [
        "motcua/events/v1/events.proto",
        "motcua/intake/v1/intake.proto",
        "motcua/reports/v1/reports.proto",
    ]
    for name in files:
        path = os.path.join(proto_dir, name)
        assert os.path.isfile(path), f"no {path}: is --proto-dir the workspace's proto/proto?"
    gen = os.path.join(out_dir, "gen")
    os.makedirs(gen)
    args = [
        "grpc_tools.protoc",
        f"-I{proto_dir}",
        f"-I{health_dir}",
        f"-I{well_known}",
        f"--python_out={gen}",
        f"--grpc_python_out={gen}",
        *files,
        "foreign_health/health.proto",
    ]
    code = protoc.main(args)
    assert code == 0, f"protoc failed with {code}: {' '.join(args)}"
    sys.path.insert(0, gen)


def ts(message_cls, when):
    t = message_cls()
    t.FromDatetime(when)
    return t


def utc(*args):
    return dt.datetime(*args, tzinfo=dt.timezone.utc)


def expect_error(call, request, code, what):
    try:
        reply = call(request, timeout=RPC_TIMEOUT)
    except grpc.RpcError as e:
        assert e.code() == code, f"{what}: expected {code}, got {e.code()}: {e.details()}"
        return e.details()
    raise AssertionError(f"{what}: expected {code}, got a reply: {reply}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intake", required=True, help="host:port of intake")
    parser.add_argument("--projection", required=True, help="host:port of projection")
    parser.add_argument("--proto-dir", required=True, help="the workspace's proto/proto")
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="motcua-py-stubs-") as tmp:
        generate_stubs(os.path.abspath(opts.proto_dir), tmp)
        from google.protobuf import timestamp_pb2

        events = importlib.import_module("motcua.events.v1.events_pb2")
        intake = importlib.import_module("motcua.intake.v1.intake_pb2")
        intake_grpc = importlib.import_module("motcua.intake.v1.intake_pb2_grpc")
        reports = importlib.import_module("motcua.reports.v1.reports_pb2")
        reports_grpc = importlib.import_module("motcua.reports.v1.reports_pb2_grpc")
        health = importlib.import_module("foreign_health.health_pb2")
        health_grpc = importlib.import_module("foreign_health.health_pb2_grpc")
        Timestamp = timestamp_pb2.Timestamp

        with grpc.insecure_channel(opts.intake) as ich, grpc.insecure_channel(
            opts.projection
        ) as pch:
            grpc.channel_ready_future(ich).result(timeout=RPC_TIMEOUT)
            grpc.channel_ready_future(pch).result(timeout=RPC_TIMEOUT)

            # grpc.health.v1: both services say they serve.
            for channel, service in ((ich, INTAKE_SERVICE), (pch, REPORTS_SERVICE)):
                status = (
                    health_grpc.HealthStub(channel)
                    .Check(health.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT)
                    .status
                )
                assert status == health.HealthCheckResponse.SERVING, (
                    f"health of {service}: {health.HealthCheckResponse.ServingStatus.Name(status)}"
                )

            desk = intake_grpc.IntakeStub(ich)
            province = reports_grpc.ReportsStub(pch)
            run = uuid.uuid4().hex[:8]

            def meta(at, request_id=None):
                return intake.CommandMeta(
                    request_id=str(uuid.uuid4()) if request_id is None else request_id,
                    actor="py-clerk",
                    occurred_at=ts(Timestamp, at),
                )

            def receive_request(dossier, at, due, request_id=None):
                return intake.ReceiveDossierRequest(
                    meta=meta(at, request_id),
                    dossier_id=dossier,
                    office_code=OFFICE,
                    province_code=PROVINCE,
                    procedure=events.Procedure(code="1.004227", field="dat-dai"),
                    channel=events.CHANNEL_IN_PERSON,
                    due_at=ts(Timestamp, due),
                )

            # Three dossiers handed in at the desk in March 2021 (UTC+7 days).
            # a: resolved before its due day (early); b: resolved after it
            # (late); c: still pending.
            dossiers = {
                "a": (f"PY-{run}-A", utc(2021, 3, 1, 2), utc(2021, 3, 10, 10)),
                "b": (f"PY-{run}-B", utc(2021, 3, 2, 2), utc(2021, 3, 5, 10)),
                "c": (f"PY-{run}-C", utc(2021, 3, 3, 2), utc(2021, 3, 20, 10)),
            }
            first_request = None
            first_reply = None
            for key, (dossier, at, due) in dossiers.items():
                request = receive_request(dossier, at, due)
                reply = desk.ReceiveDossier(request, timeout=RPC_TIMEOUT)
                assert reply.dossier_id == dossier, reply
                assert reply.version == 1, f"{dossier}: version {reply.version}"
                assert reply.event_id, f"{dossier}: no event id"
                assert reply.due_at.ToDatetime(dt.timezone.utc) == due, reply
                if first_request is None:
                    first_request, first_reply = request, reply

            # A retry with the same request id is answered with the first reply.
            retry = desk.ReceiveDossier(first_request, timeout=RPC_TIMEOUT)
            assert retry.event_id == first_reply.event_id, (
                f"retry got event {retry.event_id}, first was {first_reply.event_id}"
            )
            assert (retry.version, retry.position) == (
                first_reply.version,
                first_reply.position,
            ), f"retry {retry} differs from first {first_reply}"

            a, b = dossiers["a"][0], dossiers["b"][0]
            early = desk.RecordResult(
                intake.RecordResultRequest(meta=meta(utc(2021, 3, 5, 3)), dossier_id=a),
                timeout=RPC_TIMEOUT,
            )
            # Version 2, or 3 when intake's deadline monitor marked it late
            # first (March 2021 is long past for intake's clock).
            assert early.version in (2, 3), early
            late = desk.RecordResult(
                intake.RecordResultRequest(meta=meta(utc(2021, 3, 12, 3)), dossier_id=b),
                timeout=RPC_TIMEOUT,
            )
            assert late.version in (2, 3), late
            survey = desk.RecordSurvey(
                intake.RecordSurveyRequest(
                    meta=meta(utc(2021, 3, 6, 3)),
                    dossier_id=a,
                    scale=events.RATING_SCALE_SATISFACTION,
                    rating=events.RATING_TOP,
                    comment="nhanh",
                ),
                timeout=RPC_TIMEOUT,
            )
            assert survey.version == early.version + 1, survey

            # Refusals: nothing is appended.
            expect_error(
                desk.RecordResult,
                intake.RecordResultRequest(
                    meta=meta(utc(2021, 3, 7, 3)), dossier_id=f"PY-{run}-UNKNOWN"
                ),
                grpc.StatusCode.NOT_FOUND,
                "RecordResult on an unknown dossier",
            )
            expect_error(
                desk.ReceiveDossier,
                receive_request(
                    f"PY-{run}-D", utc(2021, 3, 4, 2), utc(2021, 3, 9, 10), request_id=""
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "ReceiveDossier without meta.request_id",
            )

            # The projection catches up: one 2021 row with exactly these figures.
            expected = dict(
                received=3, resolved=2, resolved_in_time=1, resolved_late=1, surveys=1
            )
            deadline = time.monotonic() + POLL_FOR
            polls = 0
            while True:
                polls += 1
                series = province.GetYearlySeries(
                    reports.YearlySeriesRequest(office_code=OFFICE), timeout=RPC_TIMEOUT
                )
                row = next((r for r in series.rows if r.year == 2021), None)
                got = None if row is None else {k: getattr(row, k) for k in expected}
                if got == expected:
                    break
                assert time.monotonic() < deadline, (
                    f"projection did not catch up in {POLL_FOR:.0f} s: "
                    f"2021 row {got}, expected {expected}; series {series}"
                )
                time.sleep(0.1)

            assert series.office_code == OFFICE, series
            assert [r.year for r in series.rows] == [2021], series
            assert row.in_time_over_resolved == "1/2", row
            assert row.HasField("survey_coverage"), row
            assert abs(row.survey_coverage - 1 / 3) < 1e-12, row
            scales = [
                (s.scale, s.count, {r.rating: r.count for r in s.ratings if r.count})
                for s in row.survey_scales
            ]
            assert scales == [
                (events.RATING_SCALE_SATISFACTION, 1, {events.RATING_TOP: 1})
            ], scales

    print(
        f"desk_client.py: ok (grpcio {grpc.__version__}): {OFFICE} 2021 "
        f"received={row.received} resolved={row.resolved} surveys={row.surveys} "
        f"in_time_over_resolved={row.in_time_over_resolved} after {polls} poll(s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
