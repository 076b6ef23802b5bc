#!/usr/bin/env bash
# GPU smoke test and throughput figures for SAIL-VL-2B on one GPU: random weights, 30 steps per engine.
#
# 1. benchmarks/gpu_step.py under torchrun (one process, nccl) with FSDP2 and DDP, and DeepSpeed ZeRO-2 when its
#    wheel is installed: tokens/s per GPU and MFU, torch SDPA restricted to its flash kernel (rerun with torch's own
#    kernel choice if flash is refused). Needs only torch and transformers.
# 2. The real trainer end to end (`python -m sailvl.train`, engine fsdp, bf16, packed synthetic captions with 448px
#    tiles, a checkpoint and the final export) when sailvl's own dependencies are importable; skipped otherwise.
#
# Usage: benchmarks/gpu_smoke.sh            (PYTHON, ENGINES, STEPS, TRAINER_STEPS, SEQ, MICRO override the defaults)
# The last line of output is one JSON object with every figure.
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-30}
TRAINER_STEPS=${TRAINER_STEPS:-10}
SEQ=${SEQ:-4096}
MICRO=${MICRO:-1}
ENGINES=${ENGINES:-fsdp ddp deepspeed}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if ! "$PYTHON" -c 'import torch, transformers, sys; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__); sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_smoke: needs torch with CUDA and transformers" >&2
    exit 1
fi

run_engine() {  # engine -> writes $OUT/<engine>.json (the benchmark's last line) or a skip reason
    local engine=$1 sdpa
    for sdpa in flash auto; do
        echo "== $engine (sdpa $sdpa)"
        if "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node=1 benchmarks/gpu_step.py \
            --engine "$engine" --steps "$STEPS" --seq "$SEQ" --micro "$MICRO" --sdpa "$sdpa" 2>&1 | tee "$OUT/$engine.log"; then
            grep '^{' "$OUT/$engine.log" | tail -n 1 > "$OUT/$engine.json"
            return
        fi
        echo "$engine with sdpa $sdpa failed (see above)"
    done
    printf '"failed: %s"\n' "$(grep -m1 -E 'Error|error' "$OUT/$engine.log" | tr -d '"\\' | cut -c1-200)" > "$OUT/$engine.json"
}

for engine in fsdp ddp deepspeed; do
    if [[ " $ENGINES " != *" $engine "* ]]; then
        echo '"not asked for (ENGINES)"' > "$OUT/$engine.json"
    elif [[ $engine == deepspeed ]] && ! "$PYTHON" -c 'import deepspeed' >/dev/null 2>&1; then
        echo "== deepspeed: not installed, skipped"
        echo '"not installed"' > "$OUT/deepspeed.json"
    else
        run_engine "$engine"
    fi
done

echo "== trainer end to end"
if missing=$("$PYTHON" -c 'import sailvl.train.trainer, sailvl.data.sources' 2>&1); then
    cat > "$OUT/stage.yaml" <<YAML
apiVersion: sailvl.io/v1alpha1
kind: TrainStage
metadata: {name: gpu-smoke}
spec:
  model: {preset: sail-vl-2b, maxTiles: 6, tileSize: 448}
  trainable: [vision, projector, language]
  data:
    template: caption
    maxLength: $SEQ
    packing: true
    mixture:
      - name: captions
        source: {uri: "synthetic://shapes?n=4096&seed=0&split=reference&size=448-1344&encoding=jpeg"}
  budget: {steps: $TRAINER_STEPS}
  optimizer: {lr: 1.0e-5, warmupRatio: 0.1}
  batch: {globalSize: $MICRO, microSize: $MICRO}
  precision: bf16
  parallelism: {engine: fsdp}
  checkpoint: {uri: $OUT/checkpoints, intervalSteps: 1000000, keep: 1}
  runtime: {gpusPerNode: 1}
YAML
    if SAILVL_METRICS_PORT=off "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node=1 \
        -m sailvl.train --spec "$OUT/stage.yaml" 2>&1 | tee "$OUT/trainer.log" | grep -v "it/s\]"; then
        "$PYTHON" - "$OUT" > "$OUT/trainer.json" <<'PY'
import json, sys
from pathlib import Path
history = [json.loads(line) for line in (Path(sys.argv[1]) / "checkpoints" / "history.jsonl").read_text().splitlines()]
timed = history[1:] or history
seconds = sum(h["seconds"] for h in timed)
mfus = [h["mfu"] for h in timed if h["mfu"] is not None]
print(json.dumps({
    "steps": history[-1]["step"],
    "tokens_per_second_per_gpu": round((history[-1]["tokens"] - history[0]["tokens"]) / seconds, 1) if len(history) > 1 else None,
    "mfu": round(sum(mfus) / len(mfus), 4) if mfus else None,
    "loss_first": history[0]["loss"], "loss_last": history[-1]["loss"],
    "final_exported": (Path(sys.argv[1]) / "checkpoints" / "final" / "model.safetensors").is_file(),
}))
PY
    else
        echo '"failed"' > "$OUT/trainer.json"
    fi
    echo "== input pipeline alone (the trainer's StageData on one thread, no model)"
    "$PYTHON" - "$OUT/stage.yaml" > "$OUT/pipeline.json" <<'PY' || echo '"failed"' > "$OUT/pipeline.json"
import json, sys, time
from sailvl.model.build import build_model
from sailvl.train.data import StageData
from sailvl.train.settings import load_stage
spec = load_stage(sys.argv[1]).spec
data = StageData(spec, build_model(spec.model, device="meta"), rank=0, world_size=1, block_mask=False)
data.next_step(1)
started, tokens, steps = time.perf_counter(), 0, 10
for _ in range(steps):
    tokens += data.next_step(1).tokens
seconds = time.perf_counter() - started
print(json.dumps({"seconds_per_step": round(seconds / steps, 3), "tokens_per_second": round(tokens / seconds, 1)}))
PY
    cat "$OUT/pipeline.json"
else
    echo "skipped: sailvl's dependencies are not importable here: $(echo "$missing" | tail -n 1)"
    printf '"skipped: %s"\n' "$(echo "$missing" | tail -n 1 | tr -d '"\\' | cut -c1-200)" | tee "$OUT/trainer.json" > "$OUT/pipeline.json"
fi

"$PYTHON" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print(json.dumps({name: json.loads((out / f"{name}.json").read_text()) for name in ("fsdp", "ddp", "deepspeed", "trainer", "pipeline")}))
PY
