import json
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpResponseBadRequest, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_POST

from django_ws import SendError, reverse_ws, send_to_group


def index(request):
    return render(request, "chat/index.html")


def counter(request):
    """The original README's page: RandomCounter on the default namespace."""
    return render(request, "chat/counter.html")


@ensure_csrf_cookie  # so page scripts can POST to announce with the X-CSRFToken header
def room(request, room):
    return render(request, "chat/room.html", {"room": room})


@ensure_csrf_cookie
def room_socketio(request, room):
    """The same room for a Socket.IO client: for networks where WebSockets do not get through.

    socket.io-client takes the server's http(s) URL with the route as the
    namespace, and the Engine.IO path below the websocket prefix.
    """
    url = urlsplit(reverse_ws("chat", room=room))
    prefix = urlsplit(settings.WS_BASE_URL).path.rstrip("/")
    scheme = "https" if url.scheme == "wss" else "http"
    return render(request, "chat/room_socketio.html", {
        "room": room,
        "namespace_url": f"{scheme}://{url.netloc}{url.path[len(prefix):]}",
        "socketio_path": f"{prefix}/socket.io",
    })


@require_POST
def announce(request, room):
    """An ordinary Django view that speaks into a room (POST text=...)."""
    text = request.POST.get("text", "").strip()
    if not text:
        return HttpResponseBadRequest("text is required")
    message = json.dumps({"type": "message", "author": "announcer", "text": text})
    try:
        result = send_to_group(f"chat.{room}", message)
    except SendError as exc:
        return JsonResponse({"ok": False, "error": str(exc)}, status=503)
    return JsonResponse({"ok": True, "delivered": result.delivered})
