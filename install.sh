#!/usr/bin/env bash
# Install fc into ./.venv with every framework it imports from, plus Graphviz for the PNGs.
#   ./install.sh            then   .venv/bin/fcc compile mxnet resnet50v1b
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v dot >/dev/null 2>&1; then
  echo "install.sh: installing graphviz (for the graph PNGs)"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq graphviz; } >/dev/null; then
    echo "install.sh: could not install graphviz; fc will write .dot files instead of PNGs" >&2
  fi
fi
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[all]"
echo "install.sh: fc installed in .venv (run .venv/bin/fcc, or '. .venv/bin/activate' then fcc)"
