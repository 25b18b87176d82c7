#!/usr/bin/env bash
# The test command of README.rst, and the last line of .ci/run: test what users install.
#
#   bash tests/run.sh [pytest arguments]
#
# 1. Build the sdist, and the wheel from that sdist, into dist/ (python -m build),
#    and check both with twine.
# 2. For each set of supported versions below: a fresh virtualenv on that set's
#    Python, the wheel installed into it with its [test] extra under that set's
#    constraints, and the suite run from an unpacked copy of the sdist whose
#    django_ws/ was removed. Every import of django_ws, in the tests and in the
#    servers they start, then comes from the virtualenv's site-packages
#    (tests/e2e/test_packaging.py checks it).
#
#    newest    Python 3.13, the newest Django (6.1), Tornado, pyzmq, redis-py and
#              python-socketio that the package allows: the whole suite.
#    oldest    Python 3.11 and the oldest releases the package allows (Django 4.2):
#              the whole suite.
#    django60  Python 3.12 and Django 6.0: the unit tests, the end-to-end core,
#              the packaging and the startproject tests. (The whole suite a third
#              time would add about ten minutes to CI and little coverage: the
#              other two sets run it on the Pythons and Djangos either side.)
#
#    The two-minute soak (tests marked "soak", bench/soak.py) runs in the
#    newest set only: two minutes of real time is its point, and once is enough.
#
# The fuzz targets (fuzz/, through tests/unit/test_fuzz.py, 5 s each) and the
# core's stateful test run in every set: atheris, in the [test] extra, has
# wheels for CPython 3.11 (atheris 3.0) and 3.12 to 3.13 (3.1). A set that
# lacked it would fail (DJANGO_WS_REQUIRE_ALL), not skip them.
#
# DJANGO_WS_VERSIONS="newest" runs the sets named (pytest arguments given here
# replace each set's own selection); DJANGO_WS_TEST_WORKDIR keeps the
# virtualenvs in a directory of your choice. Each set's Python is pythonX.Y on
# PATH, or else the newest X.Y in pyenv's versions; a missing one stops the run
# before anything long starts.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
work=${DJANGO_WS_TEST_WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/django-ws-tests.XXXXXX")}
versions=${DJANGO_WS_VERSIONS:-newest oldest django60}
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
cat > "$work/django60.txt" <<'EOF'
Django>=6.0,<6.1
EOF
: > "$work/newest.txt"

# Each set's Python, and the tests it runs when no pytest arguments are given ("": all).
declare -A set_python=([newest]=3.13 [oldest]=3.11 [django60]=3.12)
declare -A set_tests=([newest]="" [oldest]="--deselect tests/e2e/test_soak.py::test_two_minutes_of_churn_in_cluster_mode_lose_nothing_and_leave_nothing_behind"
                      [django60]="tests/unit tests/e2e/test_e2e_core.py tests/e2e/test_packaging.py tests/e2e/test_startproject.py")

find_python() {  # find_python 3.13: the path of a CPython 3.13, or a clear error
    local want=$1 pyenv_root candidate
    pyenv_root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    for candidate in "$(command -v "python$want" || true)" \
                     $(ls -d "$pyenv_root/versions/$want".*/bin/python3 2>/dev/null | sort -V -r); do
        if [ -n "$candidate" ] && [ -x "$candidate" ] &&
           [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ]; then
            echo "$candidate"
            return 0
        fi
    done
    echo "tests/run.sh: no Python $want: neither python$want on PATH nor $pyenv_root/versions/$want.*;" \
         "install it (pyenv install $want), or leave its set out with DJANGO_WS_VERSIONS" >&2
    return 1
}

step() { printf '\n=== %s\n' "$*"; }

declare -A pythons
for set in $versions; do
    if [ -z "${set_python[$set]+x}" ]; then
        echo "tests/run.sh: unknown set '$set' (choose among: newest oldest django60)" >&2
        exit 2
    fi
    pythons[$set]=$(find_python "${set_python[$set]}")
done

step "build the sdist and the wheel"
if [ ! -x "$work/build/bin/python" ]; then
    "$python" -m venv "$work/build"
    "$work/build/bin/python" -m pip install -q --upgrade pip build twine
fi
rm -rf "$root/dist"
"$work/build/bin/python" -m build --outdir "$root/dist" "$root" > "$work/build.log" 2>&1 || {
    cat "$work/build.log"; exit 1; }
wheel=$(ls "$root"/dist/django_ws_edge-*-py3-none-any.whl)
sdist=$(ls "$root"/dist/django_ws_edge-*.tar.gz)
echo "$wheel"
echo "$sdist"
"$work/build/bin/python" -m twine check --strict "$wheel" "$sdist"

# The suite runs from the unpacked sdist (its tests, docs and example project),
# without the package itself.
rm -rf "$work/src"
mkdir "$work/src"
tar -xzf "$sdist" -C "$work/src" --strip-components=1
rm -rf "$work/src/django_ws"

export DJANGO_WS_DIST="$root/dist"   # the artifacts, for the packaging, tutorial and startproject tests
export DJANGO_WS_SOURCE="$root"      # the checkout, whose git files the wheel must hold
export DJANGO_WS_INSTALLED=1         # django_ws must come from site-packages

summary=()
for set in $versions; do
    venv="$work/venv-$set"
    step "$set: install the wheel with [test] into a fresh virtualenv on ${pythons[$set]} ($venv)"
    rm -rf "$venv"
    "${pythons[$set]}" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    # The same constraints reach the virtualenvs that the tests make themselves.
    export PIP_CONSTRAINT="$work/$set.txt"
    "$venv/bin/python" -m pip install -q "$wheel[test]"
    ran=$("$venv/bin/python" -c 'import sys, django, tornado, zmq
print("Python %s, Django %s, Tornado %s, pyzmq %s" % (sys.version.split()[0], django.__version__, tornado.version, zmq.__version__))')
    if [ $# -gt 0 ]; then
        args=("$@")
    else
        read -r -a args <<< "${set_tests[$set]}"
    fi
    step "$set: run ${args[*]:-the whole suite} against the installed wheel: $ran"
    (cd "$work/src" && "$venv/bin/python" -m pytest "${args[@]}")
    summary+=("$set: $ran: passed")
done
step "every set passed"
printf '%s\n' "${summary[@]}"
