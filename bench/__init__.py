"""Benchmark harness: every backend against its raw driver, measured in one run.

Run ``python -m bench --help``. Nothing here is a test: it measures and reports.
"""
