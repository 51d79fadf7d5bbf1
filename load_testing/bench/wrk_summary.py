#!/usr/bin/env python3
"""One line from a wrk --latency report: requests/s, p50 and p99 in
microseconds, the non-2xx/3xx count, and socket errors when there were any.

  python3 load_testing/bench/wrk_summary.py REPORT
"""
import re
import sys

t = open(sys.argv[1]).read()


def us(v):
    n, unit = re.match(r"([\d.]+)(\w+)", v).groups()
    return float(n) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]


rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p50 = us(re.search(r"^\s+50%\s+(\S+)", t, re.M).group(1))
p99 = us(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
errs = re.search(r"Socket errors: (.*)", t)
print(f"{rps:.0f} {p50:.0f} {p99:.0f} {bad.group(1) if bad else 0} "
      f"{'errors:' + errs.group(1).replace(' ', '') if errs else ''}")
