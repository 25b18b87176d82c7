"""``python -m django_ws.worker``: one worker process (run_wsserver starts these).

For ``--gevent`` the monkey-patching happens here, first, before Django or
any database driver is imported, which is the only moment it is reliable.
"""

import sys

if __name__ == "__main__":
    if "--gevent" in sys.argv[1:]:
        from gevent import monkey

        monkey.patch_all()

    from django_ws.worker.main import main

    sys.exit(main(sys.argv[1:]))
