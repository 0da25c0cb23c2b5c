"""The test harness: real servers and processes for the tests, the benchmarks and the suites.

The product never imports this package. It holds what more than one of `tests/`, `bench/` and
`suites/` needs, so there is one way to start each thing:

    processes   a child process that can be killed, paused and started again (`Child`)
    redis       redis-server and Redis Cluster of our own on free loopback ports (never 6379)
    servers     free ports, an ASGI app under uvicorn in a thread, the d6 simulator on loopback
    receivers   webhook receivers that record, verify and answer as a script says
    receiver_process  the bare asyncio receiver in a process of its own, for throughput benchmarks
    settings    the environment and `Settings` of a bridge under test
    events      made-up outgoing events and an in-memory event source, for delivery tests
    waiting     `wait_for` (async) and `wait_until` (blocking): poll until a check holds

Dev-only packages (`standardwebhooks`) are imported inside the functions that need them.
"""
