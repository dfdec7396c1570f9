#!/usr/bin/env bash
# The GPU runs the open issues still need, in stages that each fit one 10-minute command of a
# lent machine (about 30 minutes of device time in all). Run from the repository root:
#
#   bash benchmarks/gpu_session.sh STAGE [STAGE ...]
#
# Each STAGE is one of
#   kernels   the kernel tests compiled for CUDA, then bench_kernels' one-neuron and small-width
#             chains at the paper shapes (issue 6)
#   spectrum  bench_kernels' stable spectra: the on-chip Householder kernel against the plain
#             chain, the per-layer jnp.linalg.qr Benettin and vanish's jnp path (issue 6.2)
#   qr        the stable spectrum with adaptive re-orthonormalization at the paper shapes (issue 6)
#   scale     10^6 members in bounded memory (issue 7), 64 members trained together (issue 4)
#   full      `vanish reproduce --full` (issue 5); resumable: repeat the stage until it says done
#   checks    on CUDA: the sampler's bits and the spectrum's member independence (tests), and
#             net.init's sampler against jax.random's (bench_init_compile, issue 7)
#   chains    bench_chains at the paper shapes without PyTorch: the engine that slices each
#             layer in place (session 9) against the plain scan chain (issue 6)
#   training  bench_ensemble_training alone: 64 members together, and the logging overhead (issue 4)
#
# Environment: DEADLINE_S (seconds) shortens every command's limit so that the whole call ends
# by then (a command with under 20 s left is skipped); FULL_ONLY="F9 F10 …" runs those figures
# of the full stage, in that order (the store keeps what finished, so a later call resumes).
#
# Results go to one archive, $OUT/gpu_session.tgz (with $OUT, the device tool's return folder;
# PNG figures, no PDFs), or to benchmarks/results/; nvidia-smi and `vanish info` are recorded. Each command has its own time limit, and
# every benchmark rewrites its JSON atomically, so a stage cut short keeps what it measured.
set -uo pipefail

[[ $# -ge 1 ]] || {
  echo "usage: bash benchmarks/gpu_session.sh kernels|spectrum|qr|scale|full|checks|chains|training ..." >&2
  exit 2
}
for stage in "$@"; do
  case "$stage" in
    kernels | spectrum | qr | scale | full | checks | chains | training) ;;
    *)
      echo "unknown stage '$stage': expected kernels, spectrum, qr, scale, full, checks, chains" \
        "or training" >&2
      exit 2
      ;;
  esac
done
# With $OUT (the device tool's return folder, which brings back at most 8 files) the results
# go to a work folder and, after every command, into one archive $OUT/gpu_session.tgz, so a
# call cut at its time limit still returns everything finished so far. Without it they go to
# benchmarks/results/.
if [[ -n "${OUT:-}" ]]; then
  out="$(mktemp -d)/gpu_session"
else
  out=benchmarks/results
fi
mkdir -p "$out"

# pack: rewrites $OUT/gpu_session.tgz from $out atomically (no-op without $OUT).
pack() {
  [[ -n "${OUT:-}" ]] || return 0
  local tmp="$OUT/.gpu_session.$BASHPID.tmp"
  tar czf "$tmp" --exclude='*.pdf' -C "$(dirname "$out")" "$(basename "$out")" &&
    mv "$tmp" "$OUT/gpu_session.tgz"
}

# Also every 20 s, so a call cut at the device's limit (which kills this script too) still
# returns the benchmarks' partial JSON; the last pack runs at exit.
if [[ -n "${OUT:-}" ]]; then
  (while sleep 20; do pack; done) &
  packer=$!
  trap 'kill "$packer" 2>/dev/null; wait "$packer" 2>/dev/null; rm -f "$OUT"/.gpu_session.*.tmp; pack' EXIT
fi
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.5}"
py="${PYTHON:-python}"
# The chip's model ("NVIDIA H100 80GB HBM3" -> h100), else the kind's first word.
tag="$("$py" -c 'import jax, re; k = jax.devices()[0].device_kind
m = re.search(r"\b[A-Z]{1,2}\d{2,3}\b", k); print((m.group(0) if m else k.split()[0]).lower())')"

# timed LIMIT_S NAME COMMAND...: runs COMMAND under a time limit (shortened to end by
# $DEADLINE_S, if set), output to $out/NAME.log.
timed() {
  local limit="$1" name="$2"
  shift 2
  if [[ -n "${DEADLINE_S:-}" ]]; then
    local left=$((DEADLINE_S - SECONDS - 5))
    ((left < limit)) && limit=$left
    if ((limit < 20)); then
      echo "$name: skipped ($((DEADLINE_S - SECONDS)) s left before DEADLINE_S)" | tee -a "$out/stages.txt"
      return 0
    fi
  fi
  local start=$SECONDS
  timeout --signal=TERM --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc after $((SECONDS - start)) s (limit $limit s)" | tee -a "$out/stages.txt"
  tail -n 5 "$out/$name.log"
  pack
}

nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
"$py" -m vanish info >"$out/vanish-info.txt" 2>&1 || true
pack

for stage in "$@"; do
case "$stage" in
  kernels)
    JAX_PLATFORMS=cuda timed 180 test_kernels "$py" -m pytest tests/test_kernels.py -q -n 0 -p no:cacheprovider
    timed 300 bench_kernels "$py" -m benchmarks.bench_kernels --size paper \
      --sections scalar,small --budget-s 270 --out "$out/kernels_$tag.json"
    ;;
  spectrum)
    JAX_PLATFORMS=cuda timed 150 test_spectrum_kernel "$py" -m pytest tests/test_kernels.py -q \
      -n 0 -p no:cacheprovider -k "compiled_kernels_on_gpu or spectrum"
    timed 400 bench_spectrum_kernel "$py" -m benchmarks.bench_kernels --size paper \
      --sections spectrum --budget-s 360 --out "$out/spectrum_kernel_$tag.json"
    ;;
  qr)
    timed 560 bench_qr_adaptive "$py" -m benchmarks.bench_qr --size paper --sections spectra \
      --no-layer-rows --no-presets --spectrum-methods auto --budget-s 500 \
      --out "$out/qr_adaptive_$tag.json"
    ;;
  scale)
    timed 300 bench_chunking "$py" -m benchmarks.bench_chunking --size paper \
      --chunks 1024,4096,16384 --out "$out/chunking_$tag.json"
    timed 200 bench_ensemble_training "$py" -m benchmarks.bench_ensemble_training --full \
      --out "$out/ensemble_training_$tag.json"
    ;;
  checks)
    JAX_PLATFORMS=cuda timed 120 test_init_spectrum "$py" -m pytest tests/test_init.py \
      tests/test_spectrum.py -q -n 0 -p no:cacheprovider -k "sample or fold_in or init or member"
    timed 240 bench_init_compile "$py" -m benchmarks.bench_init_compile --size paper \
      --out "$out/init_compile_$tag.json"
    ;;
  full)
    # The store lives in the (ignored) results/ folder of the device's checkout, which a warm
    # machine keeps between calls: a stage cut at its limit resumes from its last finished chunk.
    only=()
    [[ -n "${FULL_ONLY:-}" ]] && read -r -a only <<<"--only $FULL_ONLY"
    PYTHONUNBUFFERED=1 timed 570 reproduce_full "$py" -m vanish reproduce --full \
      --store results/full --out "$out/figures_full" "${only[@]}"
    # the store's records and tables (arrays stay on the machine: the archive must stay small)
    find results/full \( -name '*.json' -o -name '*.csv' \) -not -path '*/.partial-*' |
      tar czf "$out/full_store_records.tgz" -T - 2>/dev/null
    pack
    ;;
  training)
    timed 200 bench_ensemble_training "$py" -m benchmarks.bench_ensemble_training --full \
      --out "$out/ensemble_training_$tag.json"
    ;;
  chains)
    timed 450 bench_chains "$py" -m benchmarks.bench_chains --size paper --no-torch --no-scalar \
      --budget-s 400 --out "$out/chains_engine_$tag.json"
    ;;
esac
done
