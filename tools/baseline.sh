#!/usr/bin/env bash
# Baselines (issue 6): the accumulation fingerprint and the default-grid tolerance report of
# each backend on one device, written as baselines/<machine>/<backend>/{fingerprint.json,
# tolerance.json.gz,tolerance.md,default.log}. Usage: tools/baseline.sh MACHINE DEVICE BACKEND [BACKEND ...]
#   tools/baseline.sh cpu cpu torch
#   OUT=$OUT tools/baseline.sh h100 cuda torch torch-fast     (on the GPU machine)
set -u
machine=$1 device=$2; shift 2
root=${OUT:-baselines}/$machine
export PYTHONUNBUFFERED=1
python3 -c 'import torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__)'
rc=0
for b in "$@"; do
  mkdir -p "$root/$b"
  python3 -m conformance.probe --backend "$b" --device "$device" > "$root/$b/fingerprint.json" || rc=1
  cat "$root/$b/fingerprint.json"
  python3 -m pytest -n "${WORKERS:-auto}" -q -p no:randomly --device="$device" --backend="$b" \
    --grid=default --report-dir="$root/$b/report" > "$root/$b/default.log" 2>&1
  echo "default $b: exit $?"; tail -n 3 "$root/$b/default.log"
  # keep the JSON (gzipped; `python -m conformance.report` reads .json.gz) and the Markdown;
  # the HTML is regenerated with `python -m conformance.report render`
  gzip -n -9 -c "$root/$b/report/tolerance.json" > "$root/$b/tolerance.json.gz" || rc=1
  mv "$root/$b/report/tolerance.md" "$root/$b/" 2>/dev/null
  rm -rf "$root/$b/report"
done
exit $rc
