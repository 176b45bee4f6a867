"""Benchmarks of avnas-nni: paper tables, figures and speed measurements."""
