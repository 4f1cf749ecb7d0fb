#!/usr/bin/env python3
"""An emulation of `nodemon -L` (chokidar with `usePolling`), for B8: npm and nodemon are not
installed on the benchmark machines, so this does what chokidar's polling does, in Python.

chokidar's usePolling watches every file and every directory with `fs.watchFile` (one stat of each
path per interval; nodemon -L polls every 100 ms) and re-reads a directory whose stat changed to
find files added or removed. This does the same from one loop at a fixed rate: every `--interval`
it stats every known path; a file whose (mtime, size, inode) changed, or that is gone, or a new
file in a changed directory, is a change, and a tick with changes runs `--command` once (through
`sh -c`, not waited for). No debounce (nodemon adds its own delay before restarting; not here).

Real nodemon -L does the same stats through libuv's thread pool with a JavaScript callback per
file and per tick, so it should cost at least what this costs, not less.

  stat-poller.py --interval 0.1 --command 'stamp.sh out.txt' DIR
"""

import argparse
import os
import stat
import subprocess
import sys
import time


def key(st):
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def scan(directory, paths, limit):
    """Adds `directory`'s entries (recursively for new directories) to `paths`; returns how many."""
    added = 0
    todo = [directory]
    while todo and len(paths) < limit:
        current = todo.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            if entry.path in paths:
                continue
            try:
                st = os.stat(entry.path)
            except OSError:
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            paths[entry.path] = (is_dir, key(st))
            added += 1
            if is_dir:
                todo.append(entry.path)
    return added


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between stats of a path (default 0.1)")
    parser.add_argument("--command", required=True, help="shell command run once per tick with changes")
    parser.add_argument("--max-paths", type=int, default=1_000_000, help="stop adding paths past this many")
    parser.add_argument("directory")
    args = parser.parse_args()

    root = os.path.abspath(args.directory)
    st = os.stat(root)
    paths = {root: (True, key(st))}
    scan(root, paths, args.max_paths)
    print(f"stat-poller: watching {len(paths)} paths under {root}, one stat each every "
          f"{args.interval * 1000:.0f} ms", flush=True)

    running = []
    tick = time.monotonic()
    while True:
        # Fixed rate, like libuv's fs poll timers: the next tick is one interval after this one's
        # start; a scan longer than the interval skips the ticks it overran.
        tick += args.interval
        now = time.monotonic()
        if tick < now:
            tick = now
        time.sleep(tick - now)

        changed = 0
        for path, (is_dir, old) in list(paths.items()):
            try:
                current = key(os.stat(path))
            except OSError:
                del paths[path]
                changed += 1
                continue
            if current != old:
                paths[path] = (is_dir, current)
                if is_dir:
                    changed += scan(path, paths, args.max_paths)  # new entries are changes
                else:
                    changed += 1
        running = [p for p in running if p.poll() is None]  # reap finished commands
        if changed:
            running.append(subprocess.Popen(["sh", "-c", args.command]))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
