#!/usr/bin/env bash
# An air-style stop-then-start reloader, the anchor of B3 (and a restart-style contender):
# on a change under Sources/, wait for DEBOUNCE seconds of quiet, run BUILD; if it succeeds, stop
# the old server (SIGTERM, wait for it to exit) and start BINARY. The first build and start happen
# at once. The server gets its port from the environment (PORT), like under safe-watch.
#   air-style.sh PROJECT BUILD BINARY [DEBOUNCE]
# Stop it by signalling its process group.
set -u
project=$1 build=$2 binary=$3 debounce=${4:-0.1}
cd "$project" || exit 2
inotifywait -q -m -r -e close_write,moved_to,create,delete --exclude '/\.' Sources | {
  pid=
  if sh -c "$build"; then "$binary" & pid=$!; fi
  while read -r _; do
    while read -r -t "$debounce" _; do :; done   # debounce: drain until DEBOUNCE of quiet
    if sh -c "$build"; then
      if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
      "$binary" & pid=$!
    fi
  done
}
