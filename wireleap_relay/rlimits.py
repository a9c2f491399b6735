"""The open files limit, which bounds the streams a process can hold: each costs a socket."""

import resource


def raise_open_files() -> tuple[int, int]:
    """Lift the soft limit to the hard one, as the README's ulimit advice intends;
    (soft before, soft now, which is the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, hard
