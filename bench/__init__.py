"""Tongdao benchmarks: measurements, not tests. ``python -m bench --help`` (or ``make bench``).

Results go to ``bench/results/<name>.json`` (gitignored); each run also prints a summary.
A missed budget is recorded in the JSON and the summary but never changes the exit status:
only a crash of the benchmark itself does.
"""
