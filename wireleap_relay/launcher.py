"""The single file's `__main__.py` (contrib/singlefile.py puts it there): the first code to
run, on whatever interpreter the operator has. It checks that interpreter, unpacks the
libraries into the relay's home (not shiv's default ~/.shiv) with shiv's extraction, and
runs `wireleap_relay.__main__:main` from there. It stands in for shiv's bootstrap, which
would name the folder after the file as well as the build and open the archive again.

It must parse on any Python, so that an unsupported one prints one line instead of a
traceback: no f-strings, no annotations (type comments instead), nothing third-party.
"""

import os
import sys

OLDEST, NEWEST = (3, 10), (3, 14)  # contrib/singlefile.py carries wheels for each
MACHINE = "x86_64"
OLDEST_GLIBC = (2, 28)  # manylinux_2_28, the newest tag among the wheels
NEEDS = "wireleap-relay needs CPython 3.10 to 3.14 (64-bit) on x86_64 Linux with glibc 2.28+"

HOME_ENV = "WIRELEAP_HOME"  # as wireleap_relay.home
UNPACKED = "wireleap-relay.lib"  # the folder in the home that holds the unpacked builds


def this_interpreter():
    # type: () -> dict
    import struct

    if hasattr(sys, "implementation"):
        implementation = sys.implementation.name
    else:  # before 3.3
        import platform

        implementation = platform.python_implementation().lower()
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""  # "glibc 2.36"
    except (AttributeError, ValueError, OSError):
        libc = ""  # not glibc: musl, or not Linux
    return {
        "implementation": implementation,
        "version": tuple(sys.version_info[:3]),
        "platform": sys.platform,
        "machine": os.uname()[4] if hasattr(os, "uname") else "unknown",
        "bits": struct.calcsize("P") * 8,
        "abiflags": getattr(sys, "abiflags", ""),
        "libc": libc,
    }


def is_supported(facts):
    # type: (dict) -> bool
    return (facts["implementation"] == "cpython"
            and OLDEST <= tuple(facts["version"][:2]) <= NEWEST
            and facts["platform"].startswith("linux")
            and facts["machine"] == MACHINE
            and facts["bits"] == 64
            and "t" not in facts["abiflags"]  # a free-threaded build has other extensions
            and _glibc(facts["libc"]) >= OLDEST_GLIBC)


def describe(facts):
    # type: (dict) -> str
    """`CPython 3.9.18 (64-bit) on x86_64 linux with glibc 2.36`."""
    names = {"cpython": "CPython", "pypy": "PyPy"}
    name = names.get(facts["implementation"], facts["implementation"])
    if "t" in facts["abiflags"]:
        name += " (free-threaded)"
    version = ".".join(str(part) for part in facts["version"])
    return "{} {} ({}-bit) on {} {} with {}".format(
        name, version, facts["bits"], facts["machine"], facts["platform"],
        facts["libc"] or "no glibc")


def _glibc(libc):
    # type: (str) -> tuple
    parts = libc.split()
    if len(parts) != 2 or parts[0] != "glibc":
        return (0,)
    try:
        return tuple(int(n) for n in parts[1].split(".")[:2])
    except ValueError:
        return (0,)


def home_of(archive):
    # type: (str) -> str
    """The relay's home, as wireleap_relay.home.find_home finds it for this archive."""
    override = os.environ.get(HOME_ENV)
    if override:
        return os.path.abspath(override)
    return os.path.dirname(os.path.realpath(archive))


def unpack_root(home):
    # type: (str) -> str
    return os.path.join(home, UNPACKED)


def unpack(archive_path, root):
    # type: (str, str) -> str
    """The archive's site-packages, unpacked under root once per build with shiv's lock
    and atomic rename; a failed unpack leaves nothing behind. A folder is named by the
    build alone: `wireleap-relay.next` and `wireleap-relay` of one build share it."""
    import shutil
    import zipfile
    from pathlib import Path

    import _bootstrap  # shiv's, at the archive's top level
    from _bootstrap.environment import Environment

    with zipfile.ZipFile(archive_path) as archive:
        build = Environment.from_json(archive.read("environment.json").decode()).build_id
        target = os.path.join(root, build)
        site_packages = os.path.join(target, "site-packages")
        if not os.path.isdir(site_packages):
            try:
                _bootstrap.extract_site_packages(archive, Path(target))
            except OSError:
                # Our own extraction failed (a full disk): it held shiv's lock, so the
                # half-written folder is ours to remove. Anything else (Ctrl-C while
                # waiting for another process's extraction) must not touch theirs.
                shutil.rmtree(target + ".tmp", ignore_errors=True)
                raise
    return site_packages


def put_first(site_packages):
    # type: (str) -> None
    """On sys.path before the interpreter's own site-packages, as shiv's bootstrap does
    (addsitedir also runs the .pth files there)."""
    import site

    before = len(sys.path)
    site.addsitedir(site_packages)
    added, old = sys.path[before:], sys.path[:before]
    first_site = next((i for i, path in enumerate(old)
                       if os.path.basename(path) in ("site-packages", "dist-packages")),
                      len(old))
    sys.path[:] = old[:first_site] + added + old[first_site:]


def main():
    # type: () -> None
    facts = this_interpreter()
    if not is_supported(facts):
        sys.stderr.write(NEEDS + "; this is " + describe(facts) + "\n")
        sys.exit(1)
    archive = os.path.realpath(sys.argv[0])
    root = unpack_root(home_of(archive))
    try:
        site_packages = unpack(archive, root)
    except OSError as exc:
        sys.stderr.write("wireleap-relay: cannot unpack its libraries into {}: {} (it needs "
                         "about 60 MB there)\n".format(root, exc.strerror or exc))
        sys.exit(1)
    put_first(site_packages)
    from wireleap_relay.__main__ import main as relay_main

    relay_main()


if __name__ == "__main__":
    main()
