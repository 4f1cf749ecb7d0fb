#!/usr/bin/env python3
"""watchfiles as `watchfiles.watch()` runs it, with a readiness line (used by B4).

`watchfiles.watch(path)` builds a `RustNotify` (which places every inotify watch, recursively, before
returning) and then loops on `watcher.watch(debounce, step, timeout, stop)`. This script does the
same with watch()'s defaults (debounce 1600 ms, step 50 ms, no polling, recursive) and prints
`ready <time>` the moment the RustNotify exists, then `changed <path>` for every change. No filter
can keep watchfiles from watching a directory: its DefaultFilter only drops events.

  python3 bench/lib/watchfiles-ready.py TREE
"""

import sys
import time

from watchfiles._rust_notify import RustNotify


def main():
    path = sys.argv[1]
    # The same arguments watch() passes by default: debug False, force_polling False,
    # poll_delay_ms 300, recursive True, ignore_permission_denied False.
    with RustNotify([path], False, False, 300, True, False) as watcher:
        print(f"ready {time.time():.6f}", flush=True)
        deadline = time.monotonic() + 3600  # bounded: the benchmark stops it long before
        while time.monotonic() < deadline:
            changes = watcher.watch(1600, 50, 5000, None)
            if changes in ("timeout", "signal", "stop"):
                continue
            for _, changed in sorted(changes):
                print(f"changed {changed}", flush=True)


if __name__ == "__main__":
    main()
