#!/usr/bin/env bash
# The CUDA acceptance run (issue 2): accumulation probes and the default grid on the GPU with
# torch._scaled_mm, fast accumulation off and on. Writes logs and JUnit XML under ${OUT:-reports}.
set -u
out=${OUT:-reports/cuda}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 -c 'import torch, numpy; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0), "numpy", numpy.__version__)'
for b in torch torch-fast; do
  python3 -m conformance.probe --backend "$b" --device cuda | tee "$out/probe-$b.json"
done
for b in torch torch-fast; do
  python3 -m pytest -n "${WORKERS:-14}" -q -p no:randomly --device=cuda --backend="$b" --grid=default \
    -rf --tb=line --junitxml="$out/default-$b.xml" > "$out/default-$b.log" 2>&1
  echo "exit $b: $?"
  tail -n 25 "$out/default-$b.log"
done
