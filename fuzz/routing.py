"""Routes from hostile paths: the mount's resolver finds a route or says 404 (None), nothing else.

The path is the bytes after ``/socket/`` as Tornado hands them over
(percent-decoded, then UTF-8, or refused with 400 before the edge sees
them). A path that resolves reverses, through reverse_ws, to a URL that
resolves to the same route with the same arguments.
"""

from __future__ import annotations

from urllib.parse import unquote

from . import _django

_django.setup()

from django.urls import NoReverseMatch

from django_ws.routing.mount import Mount
from django_ws.routing.resolvers import reverse_ws

MOUNT = Mount("/socket")


def test_one_input(data: bytes) -> None:
    try:
        route = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # Tornado: 400
    match = MOUNT.resolve(route)
    if match is None:
        return
    try:
        url = reverse_ws(match.view_name, kwargs=match.kwargs, base_url="/socket")
    except NoReverseMatch:
        # reverse() refuses arguments its converters would not produce again (a "/" in \w+ ...);
        # a path that matched must reverse, or the route cannot be linked to.
        raise AssertionError(f"{route!r} resolves to {match.view_name} {match.kwargs} but does not reverse") from None
    assert url.startswith("/socket/"), url
    again = MOUNT.resolve(unquote(url[len("/socket/"):]))
    assert again is not None and (again.view_name, again.kwargs) == (match.view_name, match.kwargs), (
        f"{route!r} -> {url!r} -> {again}")
