"""Benchmark definitions: one small declarative ``BenchmarkSpec`` per benchmark (installed as
``corrbench.benchmarks``; registered through the ``corrbench.benchmarks`` entry-point group)."""
