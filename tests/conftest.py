"""The test process runs gevent-patched, like the relay itself: patch before anything
imports socket, ssl or requests."""

from gevent import monkey

monkey.patch_all()
