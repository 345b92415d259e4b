#!/usr/bin/env bash
# Set up a virtualenv, install edgegrad, compute the gradients of the example network in-process,
# then start the whole service (`edgegrad up`: embedded Redis, gRPC server, workers), send the
# same request through it, and run a batch job of 20,000 rows written to an .npz as it arrives.
# Its files (inputs, result, the embedded Redis's data) go to a fresh temporary folder, named as it
# starts; the service is stopped and the folder removed on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -c constraints.txt -e '.[test]'   # the versions CI tested

GRAD=(examples/xor.json --inputs examples/xor-inputs.json --targets examples/xor-targets.json --loss mse)

echo "== in-process: edgegrad grad ${GRAD[*]}"
.venv/bin/edgegrad grad "${GRAD[@]}"

LOG="$(mktemp -t edgegrad-up.XXXXXX)"
WORK="$(mktemp -d -t edgegrad-demo.XXXXXX)"
UP_PID=""
stop_service() {
    if [ -n "$UP_PID" ] && kill -0 "$UP_PID" 2>/dev/null; then
        kill -INT "$UP_PID" 2>/dev/null || true
        for _ in $(seq 1 150); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$UP_PID" 2>/dev/null || true
        wait "$UP_PID" 2>/dev/null || true
    fi
    rm -f "$LOG"
    rm -rf "$WORK"
}
trap stop_service EXIT
trap 'exit 130' INT TERM

echo "== the demo's files go to $WORK (removed when it ends)"
echo "== starting the service: edgegrad up --port 0 --workers 2 --data-dir $WORK/data"
echo "   (no Redis configured: an embedded one, fresh for this run, its data in $WORK/data)"
env -u REDIS_URL .venv/bin/edgegrad up --port 0 --workers 2 --data-dir "$WORK/data" >"$LOG" 2>&1 &
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
echo "== a batch job: 20,000 rows of inputs for examples/xor.json in a .npy file"
.venv/bin/python - "$WORK" <<'PY'
import sys
import numpy as np
x = np.random.default_rng(0).random((20000, 2))
np.save(f"{sys.argv[1]}/X.npy", x)
np.save(f"{sys.argv[1]}/T.npy", 1.0 * (x.round().sum(axis=1, keepdims=True) == 1))
PY
BATCH=(examples/xor.json --inputs "$WORK/X.npy" --targets "$WORK/T.npy" --loss bce --per-example)
echo "   edgegrad batch ${BATCH[*]} --server $ADDRESS --out $WORK/grads.npz"
.venv/bin/edgegrad batch "${BATCH[@]}" --server "$ADDRESS" --out "$WORK/grads.npz"
.venv/bin/python - "$WORK/grads.npz" <<'PY'
import sys
import numpy as np
with np.load(sys.argv[1]) as r:
    for name in r.files:
        print(f"   {name:<10} {r[name].dtype} {r[name].shape}")
    print(f"   loss {float(r['loss']):.6f}; first example's edge gradients {np.round(r['edge_grads'][0], 6).tolist()}")
PY
echo "== edgegrad jobs list --server $ADDRESS"
.venv/bin/edgegrad jobs list --server "$ADDRESS"
echo "== stopping the service"
