"""What the one-file servers beside it share: ``--port``, and the event loop the django-ws edge would pick."""

import argparse
import asyncio


def run(main) -> None:
    """Run ``main(port)`` on uvloop when installed (the edge's WS_EVENT_LOOP = "auto"), else on asyncio's loop."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8899)
    port = parser.parse_args().port
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(port))
    else:
        uvloop.run(main(port))
