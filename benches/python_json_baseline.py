#!/usr/bin/env python3
"""The Python reference of the scan benchmark (issue 7, row (e)).

Fetches every page of one Web API query with urllib and parses each body with json.loads,
as any Python connector must at least do (Airbyte's does this and more per row). It builds no
typed columns, so it is a lower bound on a Python connector's cost, not an estimate of it.

Usage (run by `cargo bench --bench scan`; the token goes in the environment, not on argv,
so it does not show in `ps`):

    DVSQL_BENCH_TOKEN=... python3 benches/python_json_baseline.py FIRST_PAGE_URL [PREFER]

PREFER defaults to `odata.maxpagesize=5000`, the header the Rust client sends for the same
query, so the simulator serves the same (cached) pages. Prints one JSON line: total seconds,
seconds inside json.loads, pages, rows, body bytes and the peak RSS of this process.
"""

import json
import os
import resource
import sys
import time
import urllib.request


def peak_rss_kib() -> int:
    """VmHWM of this process. Not ru_maxrss: Linux keeps that across execve, so a child of a
    big parent would report the parent's peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    url = sys.argv[1]
    prefer = sys.argv[2] if len(sys.argv) > 2 else "odata.maxpagesize=5000"
    token = os.environ["DVSQL_BENCH_TOKEN"]
    headers = {
        "Authorization": f"Bearer {token}",
        "Prefer": prefer,
        "Accept": "application/json",
        "OData-MaxVersion": "4.0",
        "OData-Version": "4.0",
    }
    pages = rows = body_bytes = 0
    parse_seconds = 0.0
    started = time.perf_counter()
    while url:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request) as response:
            body = response.read()
        parse_started = time.perf_counter()
        page = json.loads(body)
        parse_seconds += time.perf_counter() - parse_started
        pages += 1
        rows += len(page["value"])
        body_bytes += len(body)
        # Followed unchanged, as the Web API requires (the link carries the paging cookie).
        url = page.get("@odata.nextLink")
    seconds = time.perf_counter() - started
    peak_kib = peak_rss_kib()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "parse_seconds": parse_seconds,
                "pages": pages,
                "rows": rows,
                "bytes": body_bytes,
                "peak_rss_kib": peak_kib,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
