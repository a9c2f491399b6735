"""Bounds and marks the daemon and its command-line control must agree on, kept apart so
that neither has to import the other."""

STOP_GRACE = 10.0  # seconds running streams get to finish on a graceful stop
HANDOVER_FAILED = "hand-over failed"  # logged by a master whose successor did not come up
