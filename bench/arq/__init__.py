"""The arq baseline of `bench.delivery`; runs in `.venv-arq` (arq 0.28 needs redis<6), never in `.venv`."""
