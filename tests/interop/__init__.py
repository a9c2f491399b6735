"""Interop tests against the real Go peers (a package, so that its conftest does not take
the place of tests/integration/conftest.py as the module `conftest`)."""
