"""The one module that relies on Tornado beyond its documented API checks what it relies on at import."""

import pytest
import tornado

from django_ws.edge import protocol, tornado_compat


def test_a_missing_piece_stops_the_edge_with_the_tornado_version_in_the_message():
    with pytest.raises(tornado_compat.TornadoIncompatible) as error:
        tornado_compat._require(False, "RequestHandler.detach()")
    assert f"Tornado {tornado.version}" in str(error.value) and "RequestHandler.detach()" in str(error.value)


def test_tornados_c_mask_unmasks_like_the_protocols_own():
    mask, data = b"\x9a\x01\xff\x30", bytes(range(256)) * 5
    if tornado_compat.websocket_mask is None:
        pytest.skip("this Tornado has no C speedups")
    assert tornado_compat.websocket_mask(mask, data) == protocol.apply_mask(mask, data)


def test_the_edge_imports_no_tornado_private_name_outside_tornado_compat():
    """Every other edge module uses Tornado's documented API only (names without a leading underscore)."""
    import ast
    import pathlib

    import django_ws.edge

    root = pathlib.Path(django_ws.edge.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "tornado_compat.py":
            continue
        tree = ast.parse(path.read_text())
        tornado_names = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                         for alias in node.names if alias.name.startswith("tornado")}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tornado"):
                offenders += [f"{path.name}: from {node.module} import {a.name}" for a in node.names
                              if a.name.startswith("_")]
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = node.value
                while isinstance(base, ast.Attribute):
                    base = base.value
                if isinstance(base, ast.Name) and base.id in {n.split(".")[0] for n in tornado_names}:
                    offenders.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, offenders


def test_a_missing_piece_of_python_socketio_stops_the_edge_with_its_version_in_the_message():
    pytest.importorskip("socketio")
    from importlib.metadata import version

    from django_ws.edge.transports import socketio_compat

    with pytest.raises(socketio_compat.SocketIOIncompatible) as error:
        socketio_compat._require(False, "AsyncServer._send_packet(eio_sid, pkt)")
    message = str(error.value)
    assert f"python-socketio {version('python-socketio')}" in message and "_send_packet" in message
    assert "django-ws-edge[socketio]" in message, "the message says what to install"


def test_the_socketio_transport_uses_no_private_name_of_python_socketio_outside_socketio_compat():
    """The private names socketio_compat checks at import appear nowhere else in the edge."""
    import pathlib

    import django_ws.edge

    private = ("_handle_event", "_send_packet", "packet_class", "sid_from_eio_sid", "eio_sid_from_sid",
               "is_connected", "async_drivers")
    root = pathlib.Path(django_ws.edge.__file__).parent
    offenders = [f"{path.name}: {name}" for path in root.rglob("*.py") if path.name != "socketio_compat.py"
                 for name in private if name in path.read_text()]
    assert offenders == [], f"python-socketio beyond its documented API belongs in socketio_compat.py: {offenders}"
