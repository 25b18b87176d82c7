#!/usr/bin/env bash
# The test command of README.rst, and the last line of .ci/run: test what users install.
#
#   bash tests/run.sh [pytest arguments]
#
# 1. Build the sdist, and the wheel from that sdist, into dist/ (python -m build).
# 2. For each set of supported versions (the newest Django and Tornado that the
#    package allows, then the oldest): a fresh virtualenv, the wheel installed
#    into it with its [test] extra, and the whole suite run from an unpacked
#    copy of the sdist whose django_ws/ was removed. Every import of django_ws,
#    in the tests and in the servers they start, then comes from the
#    virtualenv's site-packages (tests/test_packaging.py checks it).
#
# DJANGO_WS_VERSIONS="newest" runs one set only; DJANGO_WS_TEST_WORKDIR keeps
# the virtualenvs in a directory of your choice (they are reused when there).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
work=${DJANGO_WS_TEST_WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/django-ws-tests.XXXXXX")}
versions=${DJANGO_WS_VERSIONS:-newest oldest}
mkdir -p "$work"

# The oldest releases the package's requirements allow (pyproject.toml):
# changing a lower bound there means changing it here (the extras' too:
# python-engineio 4.11 cannot serve long-polling on this edge, 4.12 can).
cat > "$work/oldest.txt" <<'EOF'
Django==4.2
tornado==6.5
pyzmq==25.0.0
python-socketio==5.12.0
python-engineio==4.12.0
redis==5.0.1
EOF
: > "$work/newest.txt"

step() { printf '\n=== %s\n' "$*"; }

step "build the sdist and the wheel"
if [ ! -x "$work/build/bin/python" ]; then
    "$python" -m venv "$work/build"
    "$work/build/bin/python" -m pip install -q --upgrade pip build
fi
rm -rf "$root/dist"
"$work/build/bin/python" -m build --outdir "$root/dist" "$root" > "$work/build.log" 2>&1 || {
    cat "$work/build.log"; exit 1; }
wheel=$(ls "$root"/dist/django_ws-*-py3-none-any.whl)
sdist=$(ls "$root"/dist/django_ws-*.tar.gz)
echo "$wheel"
echo "$sdist"

# The suite runs from the unpacked sdist (its tests, docs and example project),
# without the package itself.
rm -rf "$work/src"
mkdir "$work/src"
tar -xzf "$sdist" -C "$work/src" --strip-components=1
rm -rf "$work/src/django_ws"

export DJANGO_WS_DIST="$root/dist"   # the artifacts, for the packaging, tutorial and startproject tests
export DJANGO_WS_SOURCE="$root"      # the checkout, whose git files the wheel must hold
export DJANGO_WS_INSTALLED=1         # django_ws must come from site-packages

for set in $versions; do
    venv="$work/venv-$set"
    step "$set: install the wheel with [test] into a fresh virtualenv ($venv)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    # The same constraints reach the virtualenvs that the tests make themselves.
    export PIP_CONSTRAINT="$work/$set.txt"
    "$venv/bin/python" -m pip install -q "$wheel[test]"
    "$venv/bin/python" -m pip list 2>/dev/null | grep -iE '^(django|tornado|pyzmq|django-ws) '
    step "$set: run the suite against the installed wheel"
    (cd "$work/src" && "$venv/bin/python" -m pytest "$@")
done
