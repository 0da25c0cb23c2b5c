"""Benchmarks of change detection; each module runs alone (`python -m bench.<name>`) and exits 1 on FAIL."""
