#!/usr/bin/env bash
# Muse vs llama.cpp on one GGUF file: `muse bench generate` and llama_cpp_generate.py
# (llama-cpp-python) alternated ROUNDS times at the same thread count, printing each round's
# prompt-processing (pp) and generation (tg) tokens/s and the median ratio Muse / llama.cpp
# (above 1 means Muse is faster), under a header line naming the CPU.
#
# usage: scripts/bench/vs_llama_cpp.sh MODEL.gguf [THREADS=2] [ROUNDS=3] [PROMPT=512] [GEN=128]
# needs: a release build (cargo build --release) and llama-cpp-python in $PYTHON's environment
# (default ~/.cache/muse-bench-venv: pip install llama-cpp-python).
set -euo pipefail
model=${1:?usage: vs_llama_cpp.sh MODEL.gguf [THREADS] [ROUNDS] [PROMPT] [GEN]}
threads=${2:-2}
rounds=${3:-3}
prompt=${4:-512}
gen=${5:-128}
root=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-$HOME/.cache/muse-bench-venv/bin/python}
sizes=(--prompt-tokens "$prompt" --gen-tokens "$gen" --reps 3)
muse_cmd=("$root/target/release/muse" --threads "$threads" bench generate "$model" "${sizes[@]}")
ref_cmd=("$py" "$root/scripts/bench/llama_cpp_generate.py" "$model" --threads "$threads" "${sizes[@]}")

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') (family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' '), model $(grep -m1 '^model\s*:' /proc/cpuinfo | cut -d: -f2 | tr -d ' '))"
echo "# $(basename "$model") on $cpu ($(nproc) cores), $threads threads, pp$prompt tg$gen, $(date -u +%Y-%m-%dT%H:%MZ)"

# pp and tg tokens/s of the last JSON line on stdin, space separated.
fields() { "$py" -c "import json,sys; d = json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d['prompt_tokens_per_s'], d['gen_tokens_per_s'])"; }
pp_ratios=(); tg_ratios=()
for r in $(seq "$rounds"); do
  read -r mpp mtg < <("${muse_cmd[@]}" 2>/dev/null | fields)
  read -r lpp ltg < <("${ref_cmd[@]}" 2>/dev/null | fields)
  pp_ratios+=("$("$py" -c "print(round($mpp / $lpp, 3))")")
  tg_ratios+=("$("$py" -c "print(round($mtg / $ltg, 3))")")
  echo "round $r: pp muse $mpp llama.cpp $lpp tok/s (ratio ${pp_ratios[-1]}) | tg muse $mtg llama.cpp $ltg tok/s (ratio ${tg_ratios[-1]})"
done
"$py" -c "import statistics as s; print('median ratio muse/llama.cpp (tokens/s): pp', s.median([$(IFS=,; echo "${pp_ratios[*]}")]), 'tg', s.median([$(IFS=,; echo "${tg_ratios[*]}")]))"
