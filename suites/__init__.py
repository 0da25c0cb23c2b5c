"""Proof under fire: suites that anyone can rerun against real processes on this machine.

Each suite is a module with a `main()` (`python -m suites.<name> --help`), starts its own redis-server(s)
on free loopback ports and its own d6 simulator, prints its figures and a PASS/FAIL line, and exits
non-zero on FAIL. None of them is part of `make test`: `make chaos`, `make faults`, `make scale` and
`make soak` run them.

    chaos         two `serve` processes killed with SIGKILL again and again under churn and flaky receivers
    redis_faults  Redis killed and restarted (AOF everysec / always) and unreachable for 30 s
    d6_faults     hypothesis-generated d6 answers against the d6 client and the school poller
    api_fuzz      schemathesis against the bridge's own OpenAPI, auth and body limits
    scale         many schools, one serve then three replicas: cycle time, requests, memory, CPU
    soak          churn and flaky receivers for a long time: memory slope and latency over time

Shared parts: `processes` (the simulator and serve as child processes, CPU and RSS from /proc),
`deployment` (Redis, simulator, replicas, receivers and subscriptions as one), `bridge_api` (the admin
API), `checks` (what must hold of the event log and the deliveries) and `report` (figures and verdicts).
Redis, Redis Cluster and the webhook receivers that fail on purpose and verify signatures come from the
test harness, `bridge.testing`, which the tests and benchmarks use too.
"""
