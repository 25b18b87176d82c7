#!/usr/bin/env bash
# Sets up and runs the example project: Django's pages on http://localhost:8000/
# and the websocket server on ws://localhost:8888/socket/. Ctrl-C stops both.
#
# It installs django-ws (this checkout, editable, with Socket.IO) into a
# virtualenv of its own, example_project/.venv (made on the first run, reused
# after; DJANGO_WS_EXAMPLE_VENV names another), never into the Python on PATH.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${DJANGO_WS_EXAMPLE_VENV:-$here/.venv}"
if [ ! -x "$venv/bin/python" ]; then
    echo "Creating a virtualenv for the example in $venv"
    "${PYTHON:-python3}" -m venv "$venv"
fi
echo "Installing django-ws-edge (this checkout) into $venv"
"$venv/bin/python" -m pip install -q -e "$here/..[socketio]"
python="$venv/bin/python"
cd "$here"
"$python" manage.py migrate -v0
"$python" manage.py runserver 127.0.0.1:8000 &
http_pid=$!
trap 'kill $http_pid 2>/dev/null || true' EXIT
echo "Open http://localhost:8000/ (chat room, its Socket.IO page at /room/lobby/socketio/, RandomCounter)."
"$python" manage.py run_wsserver 127.0.0.1:8888 --websocket-url="/socket/(?P<namespace>\w*)"
