#!/usr/bin/env bash
# Set up a virtualenv, install edgegrad, compute the gradients of the example network in-process,
# then start the whole service (`edgegrad up`: embedded Redis, gRPC server, workers) and send the
# same request through it. The service is stopped on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e '.[test]'

GRAD=(examples/xor.json --inputs examples/xor-inputs.json --targets examples/xor-targets.json --loss mse)

echo "== in-process: edgegrad grad ${GRAD[*]}"
.venv/bin/edgegrad grad "${GRAD[@]}"

LOG="$(mktemp -t edgegrad-up.XXXXXX)"
UP_PID=""
stop_service() {
    if [ -n "$UP_PID" ] && kill -0 "$UP_PID" 2>/dev/null; then
        kill -INT "$UP_PID" 2>/dev/null || true
        for _ in $(seq 1 150); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$UP_PID" 2>/dev/null || true
        wait "$UP_PID" 2>/dev/null || true
    fi
    rm -f "$LOG"
}
trap stop_service EXIT
trap 'exit 130' INT TERM

echo "== starting the service: edgegrad up --port 0 --workers 2 (no Redis configured: embedded)"
env -u REDIS_URL .venv/bin/edgegrad up --port 0 --workers 2 >"$LOG" 2>&1 &
UP_PID=$!

ADDRESS=""
for _ in $(seq 1 600); do
    ADDRESS="$(sed -n 's/^edgegrad listening on \([^ ]*\).*/\1/p' "$LOG" | head -n 1)"
    [ -n "$ADDRESS" ] && break
    if ! kill -0 "$UP_PID" 2>/dev/null; then
        echo "error: edgegrad up exited before it was ready:" >&2
        cat "$LOG" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$ADDRESS" ]; then
    echo "error: edgegrad up was not ready within 60 s:" >&2
    cat "$LOG" >&2
    exit 1
fi
echo "   $(head -n 1 "$LOG")"

echo "== through the service: edgegrad grad ${GRAD[*]} --server $ADDRESS"
.venv/bin/edgegrad grad "${GRAD[@]}" --server "$ADDRESS"
echo "== stopping the service"
