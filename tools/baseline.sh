#!/usr/bin/env bash
# Baselines (issue 6): the arithmetic fingerprint, the default-grid tolerance report (seed 0)
# and the same grid over more seeds, for each backend on one device, written as
# baselines/<machine>/<backend>/{fingerprint.json,tolerance.json.gz,tolerance.md,default.log,
# seeds.jsonl}. Usage: tools/baseline.sh MACHINE DEVICE BACKEND [BACKEND ...]
#   tools/baseline.sh cpu cpu torch
#   OUT=$OUT tools/baseline.sh h100 cuda torch torch-fast     (on the GPU machine)
# SEEDS (default "1 2 ... 19") are the extra seeds; SEEDS= skips them. WORKERS: pytest -n.
# Summarize with: python tools/tightness.py table baselines/<machine>/<backend> ...
set -u
machine=$1 device=$2; shift 2
root=${OUT:-baselines}/$machine
seeds=${SEEDS-$(seq -s ' ' 1 19)}
export PYTHONUNBUFFERED=1
python3 -c 'import torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__)'
rc=0
grid() {  # backend seed report-dir log
  python3 -m pytest -n "${WORKERS:-auto}" -q -p no:randomly --device="$device" --backend="$1" \
    --grid=default --seed="$2" --report-dir="$3" > "$4" 2>&1
}
for b in "$@"; do
  dir=$root/$b
  mkdir -p "$dir"
  python3 -m conformance.probe --backend "$b" --device "$device" > "$dir/fingerprint.json" || rc=1
  cat "$dir/fingerprint.json"
  grid "$b" 0 "$dir/report" "$dir/default.log"
  echo "default $b: exit $?"; tail -n 3 "$dir/default.log"
  # keep the JSON (gzipped; `python -m conformance.report` reads .json.gz) and the Markdown;
  # the HTML is regenerated with `python -m conformance.report render`
  gzip -n -9 -c "$dir/report/tolerance.json" > "$dir/tolerance.json.gz" || rc=1
  mv "$dir/report/tolerance.md" "$dir/" 2>/dev/null
  rm -rf "$dir/report"
  : > "$dir/seeds.jsonl"
  for s in $seeds; do
    grid "$b" "$s" "$dir/seed" "$dir/seed.log"
    python3 tools/tightness.py line --seed "$s" "$dir/seed/tolerance.json" >> "$dir/seeds.jsonl" || rc=1
    tail -n 1 "$dir/seeds.jsonl"
  done
  rm -rf "$dir/seed" "$dir/seed.log"
  [ -s "$dir/seeds.jsonl" ] || rm -f "$dir/seeds.jsonl"
done
exit $rc
