#!/usr/bin/env bash
# Muse vs the PyTorch reference workloads in ../shared/bench/pytorch, alternated ROUNDS times at
# the same thread count on the same machine, printing each round's times and their ratio
# (Muse time / PyTorch time: below 1 means Muse is faster) and the median ratio, under a header
# line naming the CPU and the thread count.
#
# usage: scripts/bench/vs_pytorch.sh WORKLOAD [THREADS=2] [ROUNDS=3]
#   gpt     muse bench gpt --preset char-baby          vs gpt_char.py   (ms per training step)
#   vae     muse bench vae --preset mnist-mlp          vs vae_mlp.py    (ms per training step)
#   gan     muse bench gan --preset dcgan-mnist        vs dcgan28.py    (ms per D+G step)
#   gpt2    muse bench gpt --preset gpt2-small --generate vs gpt2_infer.py (ms per greedy token)
#   diffusion       muse bench diffusion --preset ddpm-mnist vs ddpm_unet28.py (ms per training step,
#                   and the same runs' DDIM-50 sampling of 16 images on a second line per round)
#   diffusion-ddim  the DDIM-50 sampling alone
#   seq2seq muse bench seq2seq --preset tatoeba-en-fr   vs scripts/bench/seq2seq_ref.py
#           (ms per training step, the same $SEQ2SEQ_STEPS (30) batches of 64 eng-fra pairs on
#           both sides, and CPU time per step)
#   seq2seq-translate  muse eval RUN --limit 300 --beam 1 vs seq2seq_ref.py --load W --translate
#           (ms per sentence of greedy translation of the first 300 test sentences, batches of 32)
# needs: a release build (cargo build --release), MUSE_DATA_DIR with the datasets, and the
# PyTorch venv of ../shared/bench/setup.sh at $PYTHON (default ~/.cache/muse-bench-venv).
# seq2seq also needs a translation run's tokenizer.json at $SEQ2SEQ_TOKENIZER (default
# runs/en-fr/tokenizer.json) so both sides tokenise alike, and writes eng-fra's split once
# into target/bench/eng-fra-split (muse data split) for the reference to read;
# seq2seq-translate needs that run at $SEQ2SEQ_RUN (default runs/en-fr) and the reference's
# weights trained to the same step at $SEQ2SEQ_REF_WEIGHTS (seq2seq_ref.py --save).
set -euo pipefail
workload=${1:?usage: vs_pytorch.sh gpt|vae|gan|gpt2|diffusion|diffusion-ddim|seq2seq|seq2seq-translate [THREADS] [ROUNDS]}
threads=${2:-2}
rounds=${3:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-$HOME/.cache/muse-bench-venv/bin/python}
refs=${BENCH_DIR:-$root/../shared/bench/pytorch}
export MUSE_DATA_DIR=${MUSE_DATA_DIR:-$root/../shared/data}
muse=("$root/target/release/muse" --threads "$threads")

case "$workload" in
  gpt)
    muse_cmd=("${muse[@]}" bench gpt --preset char-baby --steps 100 --warmup 10)
    ref_cmd=("$py" "$refs/gpt_char.py" --threads "$threads" --max_iters 110 --eval_iters 1)
    muse_key="d['ms_per_step_median']"; ref_key="d['ms_per_step_median']" ;;
  vae)
    muse_cmd=("${muse[@]}" bench vae --preset mnist-mlp --steps 200 --warmup 20)
    ref_cmd=("$py" "$refs/vae_mlp.py" --threads "$threads" --steps 200 --warmup 20)
    muse_key="d['ms_per_step_median']"; ref_key="d['ms_per_step_median']" ;;
  gan)
    muse_cmd=("${muse[@]}" bench gan --preset dcgan-mnist --steps 50 --warmup 5)
    ref_cmd=("$py" "$refs/dcgan28.py" --threads "$threads" --steps 50 --warmup 5)
    muse_key="d['ms_per_step_median']"; ref_key="d['ms_per_step_median']" ;;
  gpt2)
    muse_cmd=("${muse[@]}" bench gpt --preset gpt2-small --generate)
    ref_cmd=("$py" "$refs/gpt2_infer.py" --threads "$threads" --config gpt2-124m --reps 3)
    muse_key="1e3 / d['generate_tokens_per_s_median']"; ref_key="d['ms_per_token_median']" ;;
  diffusion|diffusion-ddim)
    muse_cmd=("${muse[@]}" bench diffusion --preset ddpm-mnist --steps 10 --warmup 2 --sample-reps 1)
    ref_cmd=("$py" "$refs/ddpm_unet28.py" --threads "$threads" --steps 10 --warmup 2 --sample_reps 1)
    key=ms_per_step_median; [[ $workload == diffusion-ddim ]] && key=ddim_sample_ms_median
    muse_key="d['$key']"; ref_key="d['$key']"
    # The runs time both: the training step's run reports its sampling too.
    [[ $workload == diffusion ]] && ddim_key="d['ddim_sample_ms_median']" ;;
  seq2seq|seq2seq-translate)
    run=${SEQ2SEQ_RUN:-$root/runs/en-fr}
    tokenizer=${SEQ2SEQ_TOKENIZER:-$run/tokenizer.json}
    [[ -f $tokenizer ]] || { echo "no tokenizer at $tokenizer: set SEQ2SEQ_TOKENIZER to a translation run's tokenizer.json" >&2; exit 2; }
    split=$root/target/bench/eng-fra-split
    [[ -f $split/test.tsv ]] || "${muse[@]}" data split eng-fra --out "$split" >&2
    ref=("$py" "$root/scripts/bench/seq2seq_ref.py" --threads "$threads" --split "$split" --tokenizer "$tokenizer")
    if [[ $workload == seq2seq ]]; then
      steps=${SEQ2SEQ_STEPS:-30}; warmup=$(( (steps + 5) / 6 ))  # timed steps, a sixth as many first
      muse_cmd=("${muse[@]}" bench seq2seq --preset tatoeba-en-fr --tokenizer "$tokenizer" --steps "$steps" --warmup "$warmup")
      ref_cmd=("${ref[@]}" --steps "$steps" --warmup "$warmup")
      muse_key="d['ms_per_step_median']"; ref_key="d['ms_per_step_median']"
      # CPU time of all threads per step too: on a busy machine the wall time mostly says how
      # long each side waited for a core.
      cpu_key="d['cpu_ms_per_step_median']"
    else
      head -300 "$split/test.tsv" | cut -f1 > "$split/test300.src"
      muse_cmd=("${muse[@]}" eval "$run" --limit 300 --beam 1 --json)
      ref_cmd=("${ref[@]}" --load "${SEQ2SEQ_REF_WEIGHTS:?set SEQ2SEQ_REF_WEIGHTS}" --translate "$split/test300.src" --out "$split/test300.ref-hyp")
      muse_key="1e3 / d['greedy']['sentences_per_s']"; ref_key="1e3 / d['sentences_per_s']"
    fi ;;
  *)
    echo "unknown workload '$workload': use gpt, vae, gan, gpt2, diffusion, diffusion-ddim, seq2seq or seq2seq-translate" >&2
    exit 2 ;;
esac

# The machine, so that every figure is quoted with the CPU it came from.
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') (family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' '), model $(grep -m1 '^model\s*:' /proc/cpuinfo | cut -d: -f2 | tr -d ' '))"
flags=$(grep -m1 '^flags' /proc/cpuinfo)
simd=avx2; [[ $flags == *avx512f* ]] && simd=avx512
echo "# $workload on $cpu ($(nproc) cores, $simd), $threads threads, $(date -u +%Y-%m-%dT%H:%MZ)"

# The value of a Python expression over `d`, the last JSON line on stdin.
field() { "$py" -c "import json,sys; d = json.loads(sys.stdin.read().strip().splitlines()[-1]); print(round($1, 3))"; }
ratios=(); cpu_ratios=(); ddim_ratios=()
for r in $(seq "$rounds"); do
  muse_out=$("${muse_cmd[@]}" 2>/dev/null); ref_out=$("${ref_cmd[@]}" 2>/dev/null)
  m=$(field "$muse_key" <<<"$muse_out"); t=$(field "$ref_key" <<<"$ref_out")
  ratio=$("$py" -c "print(round($m / $t, 3))")
  ratios+=("$ratio")
  line="round $r: muse $m ms, pytorch $t ms, ratio $ratio"
  if [[ -n ${cpu_key:-} ]]; then
    mc=$(field "$cpu_key" <<<"$muse_out"); tc=$(field "$cpu_key" <<<"$ref_out")
    cpu_ratios+=("$("$py" -c "print(round($mc / $tc, 3))")")
    line+="; cpu time muse $mc ms, pytorch $tc ms, ratio ${cpu_ratios[-1]}"
  fi
  echo "$line"
  if [[ -n ${ddim_key:-} ]]; then
    md=$(field "$ddim_key" <<<"$muse_out"); td=$(field "$ddim_key" <<<"$ref_out")
    ddim_ratios+=("$("$py" -c "print(round($md / $td, 3))")")
    echo "round $r, DDIM-50 of 16 images: muse $md ms, pytorch $td ms, ratio ${ddim_ratios[-1]}"
  fi
done
joined=$(IFS=,; echo "${ratios[*]}")
"$py" -c "import statistics; print('$workload, $threads threads: median ratio (muse/pytorch time)', statistics.median([$joined]))"
if [[ -n ${ddim_key:-} ]]; then
  joined=$(IFS=,; echo "${ddim_ratios[*]}")
  "$py" -c "import statistics; print('diffusion-ddim, $threads threads: median ratio (muse/pytorch time)', statistics.median([$joined]))"
fi
if [[ -n ${cpu_key:-} ]]; then
  joined=$(IFS=,; echo "${cpu_ratios[*]}")
  "$py" -c "import statistics; print('$workload, $threads threads: median ratio of cpu time', statistics.median([$joined]))"
fi
