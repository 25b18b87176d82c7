#!/usr/bin/env bash
# Sets up and runs the example project: Django's pages on http://localhost:8000/
# and the websocket server on ws://localhost:8888/socket/. Ctrl-C stops both.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m pip install -q -e "$here/..[socketio]"
cd "$here"
python3 manage.py migrate -v0
python3 manage.py runserver 127.0.0.1:8000 &
http_pid=$!
trap 'kill $http_pid 2>/dev/null || true' EXIT
echo "Open http://localhost:8000/ (chat room, its Socket.IO page at /room/lobby/socketio/, RandomCounter)."
python3 manage.py run_wsserver 127.0.0.1:8888 --websocket-url="/socket/(?P<namespace>\w*)"
