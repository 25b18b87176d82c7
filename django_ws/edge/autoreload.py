"""Autoreload for run_wsserver: Django's file watchers restart the workers, never the edge.

``runserver`` re-executes its whole process when a file changes
(``django.utils.autoreload.run_with_reloader``). run_wsserver must not: the
edge holds the clients' sockets. It takes the same watcher Django would
(``autoreload.get_reloader()``: WatchmanReloader when pywatchman and a
watchman server are there, else StatReloader) and drives it in a daemon
thread, which only reports changes to the edge's loop
(``call_soon_threadsafe``); the loop restarts the workers, separate
interpreters that load the new code (as SIGHUP does). Nothing here blocks
the loop.

Watched: what runserver watches in this process (every imported module,
and what ``autoreload_started`` receivers add: template and locale
directories), plus the ``.py`` files of the project's own apps, since a
handler named by a dotted path in ws_urls.py is imported by the workers only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import typing
from pathlib import Path

logger = logging.getLogger("django_ws.edge")


def project_app_dirs() -> list[Path]:
    """The directories of the installed apps that are the project's, not an installed distribution's."""
    from django.apps import apps

    # Not "outside sys.prefix": Docker's python images have /usr/local for a
    # prefix and the project in /usr/src/app.
    return [Path(config.path) for config in apps.get_app_configs()
            if not {"site-packages", "dist-packages"} & set(Path(config.path).parts)]


class WorkerReloader:
    """Watches the project's files in a thread; calls ``changed(paths)`` on ``loop`` after each batch of changes.

    ``report(text)`` prints a line, on the loop too: once when the first
    look at every file is done (a change from then on is seen), and if the
    watcher fails.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, changed: typing.Callable[[list[str]], None],
                 report: typing.Callable[[str], None]):
        self.loop = loop
        self.changed = changed
        self.report = report
        self._stop = threading.Event()
        self._seen: list[str] = []
        self._thread = threading.Thread(target=self._run, name="django-ws-autoreload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """The thread ends after its current tick (a second at most with StatReloader); it is a daemon."""
        self._stop.set()

    def _file_changed(self, sender: object, file_path: Path, **kwargs: object) -> bool:
        self._seen.append(str(file_path))
        return True  # handled: Django's own fallback would sys.exit(3) this thread

    def _run(self) -> None:
        from django.utils import autoreload

        try:
            reloader = autoreload.get_reloader()
            for directory in project_app_dirs():
                reloader.watch_dir(directory, "**/*.py")
            autoreload.file_changed.connect(self._file_changed, sender=reloader, weak=False)
            autoreload.autoreload_started.send(sender=reloader)
            # One tick of StatReloader is one look at every file, then a second's
            # sleep; a WatchmanReloader's first tick sets up its subscriptions.
            ticker = reloader.tick()
            next(ticker)
            self._call(self.report, f"Autoreload: watching for file changes with {type(reloader).__name__}")
            while not self._stop.is_set():
                next(ticker)
                if self._seen:
                    paths, self._seen = self._seen, []
                    self._call(self.changed, paths)
        except Exception as exc:  # noqa: BLE001  (the edge and its clients carry on; say so once)
            logger.exception("autoreload stopped")
            self._call(self.report, f"Autoreload stopped: {type(exc).__name__}: {exc}; restart by hand (SIGHUP)")

    def _call(self, function: typing.Callable[..., None], *args: typing.Any) -> None:
        try:
            self.loop.call_soon_threadsafe(function, *args)
        except RuntimeError:  # the loop has closed: the server is stopping
            self._stop.set()
