#!/usr/bin/env bash
# Time what a new user waits for on a fresh clone (issue 13): `make install`, then `wif demo` with a cold
# model cache until the dashboard is up and its Overview has drawn in headless Chromium (the dashboard
# opens once the first task is whole), then until the build behind it says "complete". Run from the
# repository root with ../shared beside it; prints one line per step and the build's own step times.
# Results go into docs/BENCHMARKS.md by hand, with the machine's load.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
d=$(mktemp -d); git clone -q "$root" "$d/repo"; ln -s "$(cd "$root/../shared" && pwd)" "$d/shared"; cd "$d/repo"
t() { date +%s.%N; }
since() { echo "$(t) - $1" | bc; }
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
s=$(t); make install > "$d/install.log" 2>&1; echo "make install: $(since "$s") s"
export XDG_CACHE_HOME="$d/cache"
port=8799
s=$(t)
.venv/bin/wif demo --headless --port $port > "$d/demo.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until curl -s "http://127.0.0.1:$port/_stcore/health" > /dev/null; do sleep 0.2; done
echo "wif demo -> dashboard serving (cold model cache): $(since "$s") s"
.venv/bin/python "$d/shared/tools/screenshot" "http://127.0.0.1:$port/" "$d/overview.png"
echo "wif demo -> Overview drawn in the browser: $(since "$s") s (screenshot $d/overview.png)"
until .venv/bin/wif demo --status --json | grep -q '"state": "complete"'; do
  if ! kill -0 $server 2>/dev/null; then echo "the dashboard stopped"; exit 1; fi
  sleep 10
done
echo "wif demo -> everything complete (behind the dashboard): $(since "$s") s"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "--- before the dashboard opened (demo.log)"; grep -E '\[wif\] .*: done' "$d/demo.log" || true
echo "--- behind it (data/demo.duckdb.build.log)"; grep -E '\[wif\] .*: done' data/demo.duckdb.build.log || true
.venv/bin/wif runs --db data/demo.duckdb || true
