#!/usr/bin/env bash
# Time what a new user waits for: a fresh clone's `make install`, `wif demo` with a cold model
# cache, and the dashboard's first page in headless Chromium. Run from the repository root, with
# ../shared beside it; prints one line per step. Results go into docs/BENCHMARKS.md by hand.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
d=$(mktemp -d); git clone -q "$root" "$d/repo"; ln -s "$(cd "$root/../shared" && pwd)" "$d/shared"; cd "$d/repo"
t() { date +%s.%N; }
s=$(t); make install > "$d/install.log" 2>&1; echo "make install: $(echo "$(t) - $s" | bc) s"
export XDG_CACHE_HOME="$d/cache"
s=$(t); .venv/bin/wif demo --no-app > "$d/demo.log" 2>&1; echo "wif demo --no-app (cold model cache): $(echo "$(t) - $s" | bc) s"
port=8799
WIF_DB="$PWD/data/demo.duckdb" .venv/bin/python -m streamlit run app.py --server.headless=true --server.port $port \
  --browser.gatherUsageStats=false --server.fileWatcherType=none > "$d/streamlit.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
s=$(t)
until curl -s "http://127.0.0.1:$port/_stcore/health" > /dev/null; do sleep 0.2; done
.venv/bin/python "$d/shared/tools/screenshot" "http://127.0.0.1:$port/" "$d/overview.png"
echo "server start + Overview drawn: $(echo "$(t) - $s" | bc) s (screenshots in $d)"
