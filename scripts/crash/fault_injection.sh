#!/usr/bin/env bash
# Kill-and-resume harness: for each family (gpt, vae, gan, classifier, diffusion), trains a small run
# straight, then again with N SIGKILLs at random moments and `--resume` after each, and checks
# every checkpoint on disk was readable and the end equals the straight run (weights, optimizer
# moments, metrics). CI runs the same test with 3 kills.
#   scripts/crash/fault_injection.sh [N=20]
set -euo pipefail
cd "$(dirname "$0")/../.."
export MUSE_DATA_DIR="${MUSE_DATA_DIR:-$(cd .. && pwd)/shared/data}"
MUSE_CRASH_KILLS="${1:-20}" cargo test --release -p muse --test cli crash_safety -- \
  --nocapture --test-threads 1 2>&1 | grep -E "kills|panicked|test result"
