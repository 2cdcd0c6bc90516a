#!/usr/bin/env bash
# Intake benchmark (issue 3): the relay from THIS checkout against the Postfix anchor, in the same run,
# with the shared harness ../shared/bench/intake_bench.py (Postfix's smtp-source; one message per
# connection; median msg/s per cell). Both servers fsync before their 250 (relay: SQLite WAL +
# synchronous=FULL; Postfix: its queue file fsync).
#
#   scripts/bench_intake.sh                      # 1 KB and 100 KB x 1/10/50 sessions x 3 runs
#   RUNS=1 COUNT=2000 scripts/bench_intake.sh    # quick pass
#   env: RUNS=3 COUNT= (harness default: 5000 <=10KB, 2000 larger) SIZES=1024,102400 SESSIONS=1,10,50
#        RUNTIME=bun|deno  RELAY_BIN=dist/odmr-relay (the compiled binary instead of the source)
#        SKIP_POSTFIX=1  OUT=/tmp/benchwork/intake-<date>
#        DATABASE=postgres://... the PostgreSQL queue instead of SQLite: a fresh database is created on
#          that server for this run (and dropped afterwards), so runs never see each other's queue; the
#          URL's role needs CREATEDB (scripts/bench/postgres_server.ts prints such a URL). PSQL=path of psql.
#
# Needs: python3, sqlite3 (or psql with DATABASE), postfix (smtp-source, and the anchor: run as root).
# Loopback only.
# Leaves: Postfix stopped (postfix stop), the relay stopped, CSVs and the table in $OUT.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$(cd "$ROOT/../shared/bench" 2>/dev/null && pwd || true)}
[ -n "$BENCH" ] && [ -f "$BENCH/intake_bench.py" ] || { echo "bench_intake: ../shared/bench/intake_bench.py not found" >&2; exit 1; }
RUNS=${RUNS:-3}
COUNT=${COUNT:-}
SIZES=${SIZES:-1024,102400}
SESSIONS=${SESSIONS:-1,10,50}
RUNTIME=${RUNTIME:-bun}
OUT=${OUT:-/tmp/benchwork/intake-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
DATABASE=${DATABASE:-}
PSQL=${PSQL:-/usr/lib/postgresql/15/bin/psql}
if [ -n "$DATABASE" ]; then TOOLS=(python3 "$PSQL"); else TOOLS=(python3 sqlite3); fi
for tool in "${TOOLS[@]}"; do command -v "$tool" >/dev/null || { echo "bench_intake: $tool missing" >&2; exit 1; }; done

WORKDIR=$(mktemp -d /tmp/odmr-bench-XXXXXX)
DATA="$WORKDIR/data"
BIN="$ROOT/node_modules/.bin/$RUNTIME"
if [ -n "${RELAY_BIN:-}" ]; then CLI=("$RELAY_BIN")
elif [ "$RUNTIME" = deno ]; then CLI=("$BIN" run -A "$ROOT/src/main.ts")
else CLI=("$BIN" "$ROOT/src/main.ts"); fi
RELAY_PID=""
POSTFIX_STARTED=0
FRESH_DB=""
cleanup() {
  if [ -n "$RELAY_PID" ] && kill -0 "$RELAY_PID" 2>/dev/null; then
    kill -TERM "$RELAY_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$RELAY_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$RELAY_PID" 2>/dev/null && kill -KILL "$RELAY_PID" 2>/dev/null || true
  fi
  if [ "$POSTFIX_STARTED" = 1 ]; then
    postsuper -d ALL >/dev/null 2>&1 || true
    postfix stop >/dev/null 2>&1 || true
  fi
  if [ -n "$FRESH_DB" ]; then
    "$PSQL" "$DATABASE" -qAt -c "DROP DATABASE IF EXISTS $FRESH_DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORKDIR"
}
trap cleanup EXIT

STORE=(--data-dir "$DATA")
if [ -n "$DATABASE" ]; then
  FRESH_DB="bench_intake_$(date +%s)_$$"
  "$PSQL" "$DATABASE" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE $FRESH_DB" >/dev/null
  RELAY_DB=$(python3 -c 'import sys, urllib.parse as u; print(u.urlsplit(sys.argv[1])._replace(path="/" + sys.argv[2]).geturl())' "$DATABASE" "$FRESH_DB")
  # The spool and the lock stay in --data-dir; the queue lives in PostgreSQL.
  STORE+=(--database "$RELAY_DB")
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
"${CLI[@]}" user add bench --generate "${STORE[@]}" >/dev/null
"${CLI[@]}" domain add example.test --user bench "${STORE[@]}" >/dev/null
# 50 sessions from one IP: lift the per-IP cap (default 20) so the harness is not refused.
"${CLI[@]}" serve "${STORE[@]}" --smtp-listen "127.0.0.1:$PORT" --odmr-listen off --odmrs-listen off \
  --http-listen off --log-level warn --smtp-max-connections-per-ip 500 --smtp-max-connections 1000 \
  2>"$OUT/relay.log" &
RELAY_PID=$!
for _ in $(seq 1 100); do
  python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$PORT),1).close()" 2>/dev/null && break
  sleep 0.1
done
echo "relay (${RELAY_BIN:-$RUNTIME}, pid $RELAY_PID) on 127.0.0.1:$PORT, data $DATA${FRESH_DB:+, PostgreSQL database $FRESH_DB}"

COMMON=(--sizes "$SIZES" --sessions "$SESSIONS" --runs "$RUNS")
[ -n "$COUNT" ] && COMMON+=(--count "$COUNT")
if [ -n "$DATABASE" ]; then
  # Deleting messages cascades to recipients and chunks (the counter triggers follow); VACUUM runs in its
  # own -c (it refuses a transaction block) so each run starts on compacted tables, as SQLite's checkpoint.
  PQ="'$PSQL' -qAt -v ON_ERROR_STOP=1 '$RELAY_DB'"
  VERIFY="$PQ -c 'select count(*) from messages'"
  CLEAR="$PQ -c 'delete from messages' -c 'vacuum messages, recipients, message_chunks' >/dev/null"
else
  DB="$DATA/queue.db"
  VERIFY="sqlite3 -cmd '.timeout 10000' $DB 'select count(*) from messages'"
  CLEAR="sqlite3 -cmd '.timeout 10000' $DB 'delete from recipients; delete from messages; pragma wal_checkpoint(truncate);' >/dev/null"
fi
python3 "$BENCH/intake_bench.py" "127.0.0.1:$PORT" "${COMMON[@]}" --label relay --csv "$OUT/relay.csv" \
  --verify-cmd "$VERIFY" --clear-cmd "$CLEAR" \
  | tee "$OUT/relay.txt"

if [ "${SKIP_POSTFIX:-0}" != 1 ]; then
  if ! command -v postfix >/dev/null; then
    echo "bench_intake: postfix not installed; skipping the anchor" >&2
  else
    "$BENCH/setup_postfix_anchor.sh" hold >"$OUT/postfix-setup.log" 2>&1
    POSTFIX_STARTED=1
    python3 "$BENCH/intake_bench.py" 127.0.0.1:25 --postfix "${COMMON[@]}" --label postfix --csv "$OUT/postfix.csv" \
      | tee "$OUT/postfix.txt"
  fi
fi

python3 - "$OUT" <<'EOF' | tee "$OUT/table.md"
import csv, os, statistics, sys
out = sys.argv[1]
def load(name):
    path = os.path.join(out, name)
    cells = {}
    if not os.path.exists(path):
        return cells
    for row in csv.DictReader(open(path)):
        key = (int(row["size"]), int(row["sessions"]))
        cells.setdefault(key, []).append((float(row["msgs_per_s"]), float(row["cpu_busy_pct"]),
                                          row["rc"] == "0" and row["queued"] in ("", row["count"])))
    return cells
relay, postfix = load("relay.csv"), load("postfix.csv")
print("| size | sessions | relay msg/s (median) | relay runs | Postfix msg/s (median) | Postfix runs | relay / Postfix | all queued |")
print("|---:|---:|---:|---|---:|---|---:|---|")
for key in sorted(set(relay) | set(postfix)):
    r, p = relay.get(key, []), postfix.get(key, [])
    rm = statistics.median(v[0] for v in r) if r else None
    pm = statistics.median(v[0] for v in p) if p else None
    ratio = f"{rm / pm:.2f}x" if rm and pm else "-"
    ok = all(v[2] for v in r + p)
    size = f"{key[0] // 1024} KB"
    fmt = lambda m: f"{m:.0f}" if m is not None else "-"
    runs = lambda vs: ", ".join(f"{v[0]:.0f}" for v in vs) or "-"
    print(f"| {size} | {key[1]} | {fmt(rm)} | {runs(r)} | {fmt(pm)} | {runs(p)} | {ratio} | {'yes' if ok else 'NO'} |")
EOF
echo "results in $OUT"
