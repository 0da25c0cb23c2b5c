"""API fuzz: schemathesis against the bridge's own OpenAPI schema, the admin token and the body limits.

    python -m suites.api_fuzz                     # 500 examples per operation and pass, about 2 minutes
    python -m suites.api_fuzz --examples 3000     # the long run

One `serve` on its own Redis and simulator (3 schools); once the schools are polled there are events,
schools and two subscriptions (loopback receivers) to hit. Then, for every operation of
`/schema/openapi.json`, hypothesis drives schemathesis' strategies (`operation.as_strategy`) and each
case is sent with `case.call` and judged with `case.validate_response` and the checks
`not_a_server_error`, `status_code_conformance`, `content_type_conformance` and
`response_schema_conformance`. Passes, each its own hypothesis run per operation:

    positive     valid data with the admin token
    negative     invalid data (wrong types, missing fields, out of range, unknown fields, and the
                 bearer header left out, as the schema declares it) with the admin token
    known ids    valid data whose path ids are ones that exist (subscriptions, events, schools);
                 DELETE is left out of this pass (it would remove the fixture); it is exercised by
                 hand on a throwaway subscription at the end (204, then 404)
    no token     valid data without `Authorization`: every /v1 operation must answer 401 and nothing
                 else; the public ones (/health, /metrics) must not ask for a token
    wrong token  the same with a wrong bearer token: 401 only

Every answer of every pass goes through the four checks. Must hold: no 5xx anywhere, no schema
violation (undocumented status code, content type or body), no 401 with the right token, only 401
without or with a wrong token. Then, by hand: a body over the 1 MB limit (with Content-Length, and
chunked without one) is refused with 413 on every body-taking operation; a wrong Content-Type, malformed
JSON, an empty body and a JSON array get a 4xx whose `detail` says what is wrong; the schema, console
and health paths stay public.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bridge.app import MAX_REQUEST_BODY_BYTES
from bridge.testing.receivers import Behaviour, Receiver, ReceiverServer
from bridge.testing.redis import RedisServer
from bridge.testing.settings import TOKEN, serve_env
from suites.bridge_api import BridgeApi
from suites.processes import Serve, Simulator
from suites.report import Report

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
PUBLIC_PREFIXES = ("/health/", "/metrics", "/schema", "/console")
BODY_OPERATIONS = (
    ("POST", "/v1/subscriptions"),
    ("PATCH", "/v1/subscriptions/{subscription_id}"),
    ("POST", "/v1/subscriptions/{subscription_id}/replay"),
    ("POST", "/v1/events/{event_id}/redeliver"),
    ("POST", "/v1/dead-letters/retry"),
)
SAMPLES_PER_OPERATION = 3
ADMIN = f"Bearer {TOKEN}"


@dataclass
class Tally:
    """What one operation answered over all the passes."""

    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: int = 0
    violations: Counter[str] = field(default_factory=Counter)
    unauthenticated: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    samples: list[str] = field(default_factory=list)

    def sample(self, text: str) -> None:
        if len(self.samples) < SAMPLES_PER_OPERATION:
            self.samples.append(text)


@dataclass
class Fixture:
    subscription_ids: list[str]
    event_ids: list[str]
    school_ids: list[int]


def is_public(path: str) -> bool:
    return path.startswith(PUBLIC_PREFIXES)


def describe(case: Any, response: Any | None) -> str:
    status = "no answer" if response is None else str(response.status_code)
    body = "" if response is None else response.text[:300].replace("\n", " ")
    sent = {
        "path": case.path_parameters or None,
        "query": case.query or None,
        "body": None if type(case.body).__name__ == "NotSet" else case.body,
    }
    shown = {k: v for k, v in sent.items() if v is not None}
    return f"{case.operation.label} {str(shown)[:300]} -> {status} {body}"


class Fuzzer:
    def __init__(self, base_url: str, examples: int, rng_seed: int, report: Report) -> None:
        self.base_url = base_url
        self.examples = examples
        self.seed = rng_seed
        self.report = report
        self.schema = schemathesis.openapi.from_url(f"{base_url}/schema/openapi.json", wait_for_schema=30)
        self.operations: list[Any] = []
        for result in self.schema.get_all_operations():
            if isinstance(result, Err):  # an operation schemathesis cannot read is a schema bug
                raise RuntimeError(f"/schema/openapi.json: an operation is not usable: {result.err()}")
            self.operations.append(result.ok())
        self.tallies: dict[str, Tally] = {op.label: Tally() for op in self.operations}
        self.cases_by_pass: Counter[str] = Counter()
        self.skipped: list[str] = []

    def run(
        self,
        name: str,
        operation: Any,
        *,
        headers: dict[str, str],
        mode: schemathesis.GenerationMode = schemathesis.GenerationMode.POSITIVE,
        path_parameters: dict[str, Any] | None = None,
        examples: int | None = None,
        judge: Callable[[Any, Any, Tally], None] | None = None,
    ) -> None:
        """One hypothesis run of `examples` cases of `operation`; every finding is tallied, none raised."""
        tally = self.tallies[operation.label]
        strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

        @seed(self.seed)
        @settings(
            max_examples=examples or self.examples,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        )
        @given(case=strategy)
        def probe(case: Any) -> None:
            if "authorization" not in {k.lower() for k in headers} and case.headers:
                case.headers = {k: v for k, v in case.headers.items() if k.lower() != "authorization"}
            tally.cases += 1
            self.cases_by_pass[name] += 1
            try:
                response = case.call(base_url=self.base_url, headers=headers, timeout=30)
            except Exception as error:  # the bridge hung up or timed out: as bad as a 5xx
                tally.transport_errors += 1
                tally.sample(f"[{name}] {describe(case, None)}: {type(error).__name__}: {error}")
                return
            tally.statuses[response.status_code] += 1
            if judge is not None:
                judge(case, response, tally)
            if response.status_code >= 500:
                tally.server_errors += 1
                tally.sample(f"[{name}] {describe(case, response)}")
            if response.status_code == 401 and response.request.headers.get("Authorization") == ADMIN:
                tally.violations["401 with the admin token"] += 1
                tally.sample(f"[{name}] 401 with the admin token: {describe(case, response)}")
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except FailureGroup as group:
                for failure in group.exceptions:
                    if isinstance(failure, Failure) and failure.title != "Server error":
                        tally.violations[failure.title] += 1
                        message = failure.message.replace("\n", " ")[:300]
                        tally.sample(f"[{name}] {failure.title}: {message} | {describe(case, response)}")

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                probe()
        except Unsatisfiable:  # no invalid input exists for an operation that takes none
            self.skipped.append(f"{operation.label} [{name}]")
        except Exception as error:  # the suite or schemathesis broke: say so, do not pass quietly
            self.report.problems.append(
                f"{operation.label} [{name}] stopped: {type(error).__name__}: {str(error)[:300]}"
            )


def known_path_parameters(operation: Any, fixture: Fixture) -> Iterator[dict[str, Any]]:
    names = {p.name for p in operation.path_parameters}
    if not names or operation.method.upper() == "DELETE":
        return
    if names == {"subscription_id"}:
        for sub_id in fixture.subscription_ids:
            yield {"subscription_id": sub_id}
    elif names == {"event_id"}:
        for event_id in fixture.event_ids:
            yield {"event_id": event_id}
    elif names == {"school_id"}:
        for school_id in fixture.school_ids:
            yield {"school_id": school_id}


def fuzz(fuzzer: Fuzzer, fixture: Fixture, args: argparse.Namespace) -> None:
    report = fuzzer.report
    auth = {"Authorization": ADMIN}
    wrong = {"Authorization": "Bearer not-the-token"}

    def unauthenticated(case: Any, response: Any, tally: Tally) -> None:
        path = case.operation.path
        tally.unauthenticated[response.status_code] += 1
        if is_public(path):
            if response.status_code in (401, 403) or response.status_code >= 500:
                tally.sample(f"[public, no token] {describe(case, response)}")
        elif response.status_code != 401:
            tally.sample(f"[no or wrong token] {describe(case, response)}")

    for operation in fuzzer.operations:
        started = time.monotonic()
        fuzzer.run("positive", operation, headers=auth)
        if not args.no_negative:
            fuzzer.run("negative", operation, headers=auth, mode=schemathesis.GenerationMode.NEGATIVE)
        known = list(known_path_parameters(operation, fixture))
        for params in known:
            fuzzer.run(
                "known ids",
                operation,
                headers=auth,
                path_parameters=params,
                examples=max(5, args.examples // 3),
            )
        unauth_examples = max(5, args.examples // 3)
        fuzzer.run("no token", operation, headers={}, examples=unauth_examples, judge=unauthenticated)
        if not is_public(operation.path):
            fuzzer.run(
                "wrong token", operation, headers=wrong, examples=unauth_examples, judge=unauthenticated
            )
        tally = fuzzer.tallies[operation.label]
        report.note(
            f"{operation.label:<58} {tally.cases:>5} cases {time.monotonic() - started:5.1f} s  "
            f"5xx {tally.server_errors}  violations {sum(tally.violations.values())}  "
            f"statuses {dict(sorted(tally.statuses.items()))}"
        )


# -- by hand: body limits and malformed bodies --------------------------------------------------------


def oversized(client: httpx.Client, base: str, fixture: Fixture, report: Report) -> list[str]:
    """Every body-taking operation, sent 1.5 MB with and without Content-Length: 413, nothing else."""
    ids = {"subscription_id": fixture.subscription_ids[0], "event_id": fixture.event_ids[0]}
    padding = "x" * (MAX_REQUEST_BODY_BYTES + MAX_REQUEST_BODY_BYTES // 2)
    body = f'{{"url": "http://127.0.0.1:9/", "description": "{padding}"}}'.encode()
    results: list[str] = []
    for method, template in BODY_OPERATIONS:
        path = template.format(**ids)
        for how in ("content-length", "chunked"):
            content: bytes | Iterator[bytes] = body
            if how == "chunked":
                content = (body[i : i + 65536] for i in range(0, len(body), 65536))
            try:
                answer = client.request(
                    method, base + path, content=content, headers={"Content-Type": "application/json"}
                )
                status = answer.status_code
                detail = _detail(answer)
            except httpx.HTTPError as error:  # the server may close the connection while we still send
                status, detail = 0, f"{type(error).__name__}: {error}"
            results.append(f"{method} {template} ({how}): {status}")
            report.check(
                status == 413,
                f"oversized body ({len(body)} bytes, {how}) to {method} {template}: {status} {detail[:200]}",
            )
    return results


def _detail(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200]
    return str(body.get("detail", "")) if isinstance(body, dict) else str(body)[:200]


def malformed(client: httpx.Client, base: str, report: Report) -> list[str]:
    """Bodies a careless client sends: each must get a 4xx whose `detail` says something useful."""
    url = base + "/v1/subscriptions"
    good = b'{"url": "http://127.0.0.1:9/hook"}'
    cases = [
        ("wrong Content-Type (text/plain)", good, "text/plain"),
        (
            "wrong Content-Type (form)",
            b"url=http%3A%2F%2F127.0.0.1%3A9%2Fhook",
            "application/x-www-form-urlencoded",
        ),
        ("malformed JSON", b'{"url": "http://127.0.0.1:9/hook",', "application/json"),
        ("not UTF-8", b'{"url": "\xff\xfe"}', "application/json"),
        ("empty body", b"", "application/json"),
        ("JSON array", b'["http://127.0.0.1:9/hook"]', "application/json"),
        ("JSON null", b"null", "application/json"),
        ("unknown field", b'{"url": "http://127.0.0.1:9/hook", "colour": "red"}', "application/json"),
        ("url not a string", b'{"url": 17}', "application/json"),
        ("deeply nested", b'{"url": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json"),
    ]
    lines: list[str] = []
    for label, body, content_type in cases:
        answer = client.post(url, content=body, headers={"Content-Type": content_type})
        detail = _detail(answer)
        lines.append(f"{label}: {answer.status_code} {detail[:120]!r}")
        useful = bool(detail) and detail.strip().lower() not in {
            "bad request",
            "validation failed",
            "internal server error",
        }
        report.check(
            400 <= answer.status_code < 500 and useful,
            f"POST /v1/subscriptions with {label}: {answer.status_code} detail {detail[:200]!r}",
        )
    return lines


def deletion(client: httpx.Client, base: str, receiver_url: str, report: Report) -> str:
    """DELETE on a real id, once, on a throwaway subscription: 204, then 404 for every later call."""
    created = client.post(base + "/v1/subscriptions", json={"url": receiver_url, "description": "throwaway"})
    if not report.check(
        created.status_code == 201, f"creating a throwaway subscription: {created.status_code}"
    ):
        return "not run"
    sub_id = created.json()["id"]
    answers = [
        client.delete(f"{base}/v1/subscriptions/{sub_id}").status_code,
        client.delete(f"{base}/v1/subscriptions/{sub_id}").status_code,
        client.get(f"{base}/v1/subscriptions/{sub_id}").status_code,
        client.post(f"{base}/v1/subscriptions/{sub_id}/test").status_code,
    ]
    report.check(answers == [204, 404, 404, 404], f"DELETE, DELETE, GET, test on one subscription: {answers}")
    return " ".join(map(str, answers))


def public_paths(base: str, report: Report) -> str:
    """Paths that are public by design answer without a token (and never 401)."""
    answers = {}
    for path in ("/health/live", "/health/ready", "/metrics", "/schema/openapi.json", "/console/"):
        answers[path] = httpx.get(base + path, timeout=10).status_code
        report.check(answers[path] == 200, f"GET {path} without a token: {answers[path]} (it is public)")
    return ", ".join(f"{p} {s}" for p, s in answers.items())


# -- the run ------------------------------------------------------------------------------------------


def prepare(
    serve: Serve, sim: Simulator, api: BridgeApi, receivers: list[ReceiverServer], report: Report
) -> Fixture:
    serve.wait_ready(timeout=120)
    subscription_ids = []
    for server in receivers:
        created = api.create_subscription(server.hook_url, description=server.receiver.name)
        server.receiver.secret = created["secret"]
        subscription_ids.append(created["id"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        polled = [s for s in api.schools() if s.get("last_successful_poll")]
        if len(polled) >= len(sim.school_ids):
            break
        time.sleep(0.5)
    events = api.call("GET", "/v1/events", params={"limit": 20})["data"]
    if not events:
        raise RuntimeError("no events after every school was polled")
    report.note(f"{len(sim.school_ids)} schools polled, {len(subscription_ids)} subscriptions, events listed")
    return Fixture(subscription_ids, [e["id"] for e in events[:3]], list(sim.school_ids))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suites.api_fuzz", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--examples",
        type=int,
        default=500,
        help="cases per operation and pass (default 500; a third of that for "
        "the known-ids, no-token and wrong-token passes)",
    )
    parser.add_argument(
        "--no-negative", action="store_true", help="leave out the negative (invalid data) pass"
    )
    parser.add_argument("--schools", type=int, default=3)
    parser.add_argument("--learners", type=int, default=10)
    parser.add_argument("--debtors", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)

    report = Report("api_fuzz")
    workdir = Path(tempfile.mkdtemp(prefix="suite-api_fuzz-"))
    report.note(f"work directory {workdir}")
    redis_server = RedisServer(workdir)
    sim = Simulator(
        workdir, schools=args.schools, learners=args.learners, debtors=args.debtors, seed=args.seed
    )
    env = serve_env(redis_server.url, sim.base_url, BRIDGE_DELIVERY_TIMEOUT_SECONDS="2")
    serve = Serve("serve", workdir, env)
    receivers = [
        ReceiverServer(Receiver(Behaviour().script(seed=n), name=f"receiver-{n}", verify=True))
        for n in (1, 2)
    ]
    clean_exit = False
    try:
        redis_server.start()
        sim.start()
        for server in receivers:
            server.start()
        serve.start()
        api = BridgeApi(lambda: [serve.url])
        fixture = prepare(serve, sim, api, receivers, report)

        fuzzer = Fuzzer(serve.url, args.examples, args.seed, report)
        fuzz_started = time.monotonic()
        fuzz(fuzzer, fixture, args)
        fuzz_seconds = time.monotonic() - fuzz_started

        client = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        oversize = oversized(client, serve.url, fixture, report)
        bad_bodies = malformed(client, serve.url, report)
        deleted = deletion(client, serve.url, receivers[0].hook_url, report)
        public = public_paths(serve.url, report)
        report.check(serve.alive, "the serve process died during the run")

        tallies = fuzzer.tallies
        cases = sum(t.cases for t in tallies.values())
        server_errors = sum(t.server_errors for t in tallies.values())
        transport = sum(t.transport_errors for t in tallies.values())
        violations: Counter[str] = Counter()
        unauth: Counter[int] = Counter()
        public_unauth: Counter[int] = Counter()
        for label, tally in tallies.items():
            violations.update(tally.violations)
            (public_unauth if is_public(label.split(" ", 1)[1]) else unauth).update(tally.unauthenticated)
            for sample in tally.samples:
                report.problems.append(sample)
            report.check(tally.cases > 0, f"{label}: no case was generated")
        report.check(server_errors == 0, f"{server_errors} answers were 5xx")
        report.check(transport == 0, f"{transport} requests got no answer")
        report.check(not violations, f"schema violations: {dict(violations)}")
        report.check(set(unauth) <= {401}, f"/v1 without or with a wrong token answered {dict(unauth)}")
        report.check(
            not {401, 403} & set(public_unauth),
            f"public operations without a token answered {dict(public_unauth)}",
        )
        protected = sum(1 for op in fuzzer.operations if not is_public(op.path))
        report.figure(
            "operations in /schema/openapi.json", f"{len(fuzzer.operations)} ({protected} under /v1)"
        )
        report.figure("cases (all passes)", f"{cases} in {fuzz_seconds:.0f} s")
        report.figure("cases per pass", ", ".join(f"{k} {v}" for k, v in fuzzer.cases_by_pass.items()))
        statuses: Counter[int] = Counter()
        for tally in tallies.values():
            statuses.update(tally.statuses)
        report.figure("statuses seen", dict(sorted(statuses.items())))
        report.figure("5xx / no answer", f"{server_errors} / {transport}")
        report.figure("schema violations", sum(violations.values()))
        report.figure("/v1 without or with a wrong token", dict(sorted(unauth.items())))
        report.figure("public operations without a token", dict(sorted(public_unauth.items())))
        report.figure(
            "oversized body (1.5 MB) answers", sorted(Counter(x.rsplit(": ", 1)[1] for x in oversize).items())
        )
        report.figure(
            "malformed bodies",
            f"{len(bad_bodies)} kinds, all 4xx with a detail"
            if all(line.split(": ", 1)[1].startswith("4") for line in bad_bodies)
            else "see problems",
        )
        for line in bad_bodies:
            report.note(f"  {line}")
        report.figure("DELETE / DELETE / GET / test (throwaway)", deleted)
        report.figure("public paths", public)
        if fuzzer.skipped:
            report.figure("passes with no case to make", "; ".join(fuzzer.skipped))
    finally:
        code = serve.stop(timeout=45)
        clean_exit = code == 0
        for server in receivers:
            server.stop()
        sim.stop()
        redis_server.stop()
    report.check(clean_exit, "serve did not exit 0 on SIGTERM at the end")
    report.keep_or_remove(workdir, keep=args.keep_logs)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
