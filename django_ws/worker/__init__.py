"""The worker: runs handlers for the connections the edges hand it.

Kept free of imports: ``python -m django_ws.worker --gevent`` must
monkey-patch before Django, threading or a database driver is imported.
"""
