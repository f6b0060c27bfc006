#!/usr/bin/env bash
# Real clients against a running `muse serve` (issue 12): the official `openai` Python client
# (completions, chat streaming, embeddings, images) and the web page driven in headless
# Chromium. Installs what it needs (Debian chromium, a Python venv with openai, puppeteer-core
# from npm) when missing. Usage: scripts/ci/serve_clients.sh [muse binary]
set -euo pipefail
cd "$(dirname "$0")/../.."
MUSE="${1:-target/release/muse}"
WORK="$(mktemp -d)"
trap 'kill "${SERVER:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

if ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q "openai==1.*"
(cd scripts/browser && npm ci --silent --no-audit --no-fund)

GGUF="$MUSE_DATA_DIR/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
"$MUSE" train vae --preset mnist-mlp --set train.max_steps=300 --out "$WORK/vae" >/dev/null 2>&1
# A diffusion run of a few steps: enough for the page's denoising strip, not for digits.
"$MUSE" train diffusion --preset ddpm-mnist --max-steps 3 --set sample.n=4 --out "$WORK/ddpm" \
  >/dev/null 2>&1
PORT=$((20000 + RANDOM % 20000))
"$MUSE" serve "$GGUF" "$MUSE_DATA_DIR/all-minilm-l6-v2" "$WORK/vae" "$WORK/ddpm" --port "$PORT" \
  >"$WORK/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 60); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  sleep 1
done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { cat "$WORK/serve.log"; exit 1; }

TEXT=SmolLM2-135M-Instruct.Q4_1
"$WORK/venv/bin/python" scripts/ci/openai_client.py "http://127.0.0.1:$PORT/v1" \
  "$TEXT" all-minilm-l6-v2 vae
mkdir -p "$WORK/shots"
node scripts/browser/check_page.mjs "http://127.0.0.1:$PORT" "$TEXT" vae "$WORK/shots" ddpm
echo "serve clients: ok"
