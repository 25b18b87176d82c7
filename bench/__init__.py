"""django-ws's benchmark against Django Channels 4 and plain Tornado.

``python bench/run.py`` is the entry point (see bench/README.rst). The
package is laid out as the run goes:

* :mod:`bench.targets`: the servers under test and how to start them;
* :mod:`bench.scenarios`: echo, broadcast, hold and chat, each one round of
  one target, with what is measured from /proc around it;
* :mod:`bench.report`: medians and spreads over rounds, per-round ratios,
  the tables and the checks of the project's targets;
* :mod:`bench.cli`: the command line and the interleaved rounds;
* :mod:`bench.procs`, :mod:`bench.client`, :mod:`bench.database`: processes
  and /proc, the load client (``loadgen.js``), the PostgreSQL of the chat.
"""
