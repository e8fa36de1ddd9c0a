#!/usr/bin/env bash
# The Python environments `make test-interop` loads exports in:
# `tests/interop/venvs.sh DIR VERSION...` makes DIR/deps, with the pinned packages of
# tests/interop/requirements.txt (torch among them), and DIR/tl-VERSION for each
# TransformerLens version, which installs only transformer_lens itself and sees
# DIR/deps through a .pth file, so the large packages are installed once. An
# environment whose stamp (the requirements' checksum, the Python version and its
# TransformerLens version) still matches is kept: a rerun installs nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=$1
shift
python=${PYTHON:-python3}
req=tests/interop/requirements.txt
stamp() { sha256sum "$req" | cut -d' ' -f1; "$python" --version; echo "$1"; }
fresh() { [ -f "$1/stamp" ] && [ "$(cat "$1/stamp")" = "$(stamp "$2")" ]; }
purelib() { "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
pip() { "$1/bin/python" -m pip --disable-pip-version-check "${@:2}"; }

mkdir -p "$dir"
if ! fresh "$dir/deps" deps; then
    rm -rf "$dir/deps"
    "$python" -m venv "$dir/deps"
    pip "$dir/deps" install --quiet -r "$req"
    stamp deps >"$dir/deps/stamp"
fi
deps=$(realpath "$(purelib "$dir/deps")")
for version in "$@"; do
    env=$dir/tl-$version
    if ! fresh "$env" "$version"; then
        rm -rf "$env"
        "$python" -m venv "$env"
        # The venv's own setuptools would hide the pinned one torch needs.
        pip "$env" uninstall --quiet --yes setuptools
        echo "$deps" >"$(purelib "$env")/bitgrok-interop-deps.pth"
        pip "$env" install --quiet --no-deps "transformer_lens==$version"
        pip "$env" check
        stamp "$version" >"$env/stamp"
    fi
done
