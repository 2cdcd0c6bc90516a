#!/usr/bin/env bash
# Issue 4 benchmark: drain N queued 1 KB messages through ONE ATRN session into Postfix's smtp-sink.
#
#   scripts/bench_atrn.sh [N] [FETCHMAIL_N] [RUNS]      defaults 2000 300 3
#
# For each relay pipelining mode (--atrn-pipelining auto|always|never) a relay is spawned from this
# checkout with bun in a temp dir (loopback only), filled through its intake with smtp-source (not
# timed), and drained by
#   (a) the prompt customer `odmr-relay pull` (bun src/main.ts pull ... --smtp 127.0.0.1:SINK), N msgs
#   (b) fetchmail proto ODMR (../shared/bench/odmr_customer.sh), FETCHMAIL_N msgs
# timed by ../shared/bench/drain_bench.py (t0 = trigger start, t1 = sink counted every message).
# Then the Postfix anchor in the same run (needs root): setup_postfix_anchor.sh hold, drain_bench.py
# --postfix, postfix stop. SKIP_POSTFIX=1 skips it; MODES="auto" limits the modes; SKIP_FETCHMAIL=1 skips (b).
# Prints a markdown table with msgs/s and ratios to Postfix. Everything bounded by counts and timeouts.
# RELAY_BIN=dist/odmr-relay runs the compiled binary (relay and pull) instead of the source;
# RESULTS_FILE=path also writes the medians as key=value lines (for scripts/bench/main.ts).
# DATABASE=postgres://... runs the relay on the PostgreSQL queue: every relay started (one per mode) gets
# a fresh database created on that server (dropped afterwards; the URL's role needs CREATEDB, as the one
# scripts/bench/postgres_server.ts prints), and the queue is counted with psql (PSQL=path) not sqlite3.
set -euo pipefail
N=${1:-2000}
FN=${2:-300}
RUNS=${3:-3}
MODES=${MODES:-"auto always never"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
BUN=$ROOT/node_modules/.bin/bun
RELAY=${RELAY_BIN:-"$BUN $ROOT/src/main.ts"}
DATABASE=${DATABASE:-}
PSQL=${PSQL:-/usr/lib/postgresql/15/bin/psql}
WORK=$(mktemp -d /tmp/bench_atrn.XXXXXX)
RELAY_PID=""
FRESH_DBS=()
cleanup() {
  if [ -n "$RELAY_PID" ] && kill -0 "$RELAY_PID" 2>/dev/null; then kill "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true; fi
  for db in "${FRESH_DBS[@]}"; do
    "$PSQL" "$DATABASE" -qAt -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
if [ -n "$DATABASE" ]; then QUEUE_TOOL=$PSQL; else QUEUE_TOOL=sqlite3; fi
for t in smtp-source smtp-sink fetchmail "$QUEUE_TOOL" python3; do
  command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || { echo "missing $t" >&2; exit 2; }
done
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1]);s.close()'; }

start_relay() { # MODE
  local mode=$1
  DATA=$WORK/data-$mode
  SMTP_PORT=$(freeport); ODMR_PORT=$(freeport)
  mkdir -p "$DATA"
  STORE=(--data-dir "$DATA")
  if [ -n "$DATABASE" ]; then
    local db="bench_atrn_${mode}_$(date +%s)_$$"
    "$PSQL" "$DATABASE" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null
    FRESH_DBS+=("$db")
    RELAY_DB=$(python3 -c 'import sys, urllib.parse as u; print(u.urlsplit(sys.argv[1])._replace(path="/" + sys.argv[2]).geturl())' "$DATABASE" "$db")
    STORE+=(--database "$RELAY_DB")
    QUEUE_COUNT="'$PSQL' -qAt '$RELAY_DB' -c 'select count(*) from messages'"
  else
    QUEUE_COUNT="sqlite3 $DATA/queue.db 'select count(*) from messages'"
  fi
  printf 'bench-secret\n' | $RELAY user add bench --password-stdin "${STORE[@]}" >/dev/null
  $RELAY domain add example.test --user bench "${STORE[@]}" >/dev/null
  $RELAY serve "${STORE[@]}" --smtp-listen "127.0.0.1:$SMTP_PORT" \
    --odmr-listen "127.0.0.1:$ODMR_PORT" --odmrs-listen off --http-listen off --hostname relay.bench.test \
    --atrn-pipelining "$mode" --smtp-min-free-space 0 --log-level warn >"$WORK/relay-$mode.log" 2>&1 &
  RELAY_PID=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$ODMR_PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "relay did not start:" >&2; cat "$WORK/relay-$mode.log" >&2; exit 1
}
stop_relay() {
  kill "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true; RELAY_PID=""
}
# drain LABEL COUNT TRIGGER -> prints median msg/s (or "fail")
drain() {
  local label=$1 count=$2 trigger=$3 sink=$4
  local out=$WORK/$label.out
  python3 "$SHARED/drain_bench.py" --fill "127.0.0.1:$SMTP_PORT" --sink "127.0.0.1:$sink" \
    --count "$count" --size 1024 --runs "$RUNS" --timeout 300 --workdir "$WORK/drain" \
    --trigger-cmd "$trigger" \
    --queue-count-cmd "$QUEUE_COUNT" >"$out" 2>&1 || true
  sed 's/^/    /' "$out" >&2
  grep -oP '^median \K[0-9.]+' "$out" || echo fail
}

declare -A RES
for mode in $MODES; do
  echo "== relay --atrn-pipelining $mode" >&2
  start_relay "$mode"
  SINK=$(freeport)
  RES[pull-$mode]=$(drain "pull-$mode" "$N" \
    "printf 'bench-secret' | $RELAY pull --server 127.0.0.1:$ODMR_PORT --user bench --domains example.test --password-stdin --tls none --smtp 127.0.0.1:$SINK --helo customer.bench.test --log-level warn" "$SINK")
  SINK=$(freeport)
  [ "${SKIP_FETCHMAIL:-0}" = 1 ] || RES[fetchmail-$mode]=$(drain "fetchmail-$mode" "$FN" \
    "WORK=$WORK/fm TIMEOUT=60 $SHARED/odmr_customer.sh 127.0.0.1 $ODMR_PORT bench bench-secret example.test 127.0.0.1 $SINK" "$SINK")
  stop_relay
done

PF=""
if [ "${SKIP_POSTFIX:-0}" != 1 ]; then
  echo "== Postfix anchor (hold queue -> smtp-sink, many connections)" >&2
  "$SHARED/setup_postfix_anchor.sh" hold >"$WORK/postfix-setup.log" 2>&1 || { cat "$WORK/postfix-setup.log" >&2; }
  python3 "$SHARED/drain_bench.py" --postfix --count "$N" --size 1024 --runs "$RUNS" --workdir "$WORK/drain" \
    >"$WORK/postfix.out" 2>&1 || true
  sed 's/^/    /' "$WORK/postfix.out" >&2
  PF=$(grep -oP '^median \K[0-9.]+' "$WORK/postfix.out" || true)
  postfix stop >/dev/null 2>&1 || true
fi

if [ -n "${RESULTS_FILE:-}" ]; then
  : >"$RESULTS_FILE"
  for key in "${!RES[@]}"; do echo "$key=${RES[$key]}" >>"$RESULTS_FILE"; done
  echo "postfix=$PF" >>"$RESULTS_FILE"
fi
ratio() { [ -n "$PF" ] && [ "$1" != fail ] && python3 -c "print(f'{$1/$PF:.2f}x')" || echo "-"; }
echo
echo "| path (1 KB msgs, one ATRN session) | pipelining | msgs | msg/s (median of $RUNS) | vs Postfix |"
echo "|---|---|---|---|---|"
for mode in $MODES; do
  echo "| relay -> odmr-relay pull -> smtp-sink | $mode | $N | ${RES[pull-$mode]} | $(ratio "${RES[pull-$mode]}") |"
done
[ "${SKIP_FETCHMAIL:-0}" = 1 ] || for mode in $MODES; do
  echo "| relay -> fetchmail proto ODMR -> smtp-sink | $mode | $FN | ${RES[fetchmail-$mode]} | $(ratio "${RES[fetchmail-$mode]}") |"
done
[ -n "$PF" ] && echo "| Postfix hold queue -> smtp-sink (parallel connections) | - | $N | $PF | 1.00x |"
echo
echo "targets: pull >= 1.5x Postfix over one connection; fetchmail >= ~22 msg/s (its line-relay ceiling)"
