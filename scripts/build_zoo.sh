#!/usr/bin/env bash
# The default LoRA zoo: 64 training + 16 held-out concepts of the shipped prompt set (k-means
# representatives), K=5 checkpoints each, 64x64 procedural pairs, on 2 CPU ranks.
# Budget: <= 2 hours on a 2-core CPU (400 LoRA steps per concept, ~2.2 min each, 40 concepts per rank).
#
#   bash scripts/build_zoo.sh            # writes runs/pairs, runs/base, runs/zoo, docs/zoo_quality.png
#   RUNS=/data/zoo-v1 bash scripts/build_zoo.sh
#
# Every step resumes: rerun the script after a crash or kill -9 and it continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
RUNS="${RUNS:-runs}"
PORT="${PORT:-29531}"  # accelerate's rendezvous port; change it if another job holds it

# 1. The base GAN on 8 representative training concepts (E2GAN). ~5-7 min.
if [ ! -d "$RUNS/base" ]; then
  SECONDS=0
  weightgen zoo base --out "$RUNS/base" --pairs "$RUNS/pairs" --n-concepts 8 --steps 1000 --threads 2 --cpu
  echo "base: ${SECONDS} s"
fi

# 2. The zoo, sharded over 2 CPU processes (1 torch thread each). ~1.7 h.
SECONDS=0
OMP_NUM_THREADS=1 accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \
  --dynamo_backend no --main_process_port "$PORT" -m weightgen zoo build \
  --out "$RUNS/zoo" --base "$RUNS/base" --pairs "$RUNS/pairs" \
  --n-train 64 --n-heldout 16 --k 5 --steps 400 --checkpoint-window 0.25 --threads 1 --cpu
echo "zoo: ${SECONDS} s"

# 3. Quality vs the base on test pairs, and the weight statistics.
python scripts/zoo_report.py "$RUNS/zoo" "$RUNS/pairs" "$RUNS/base" --plot docs/zoo_quality.png \
  --out "$RUNS/zoo/report.md" --json "$RUNS/zoo/report.json"
