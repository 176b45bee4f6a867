"""Benchmarks of avnas-nni: paper tables, figures and speed measurements."""

# Before any benchmark imports torch: avnas_nni sets the OpenMP wait policy (avnas_nni.threads), which GNU OpenMP
# reads only when it loads.
import avnas_nni  # noqa: F401
