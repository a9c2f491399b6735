"""The single file's `__main__.py` (contrib/singlefile.py puts it there): the first code to
run, on whatever interpreter the operator has. It checks that interpreter, unpacks the
libraries into the relay's home (not shiv's default ~/.shiv), then hands over to shiv's
bootstrap, which runs `wireleap_relay.__main__:main`.

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
    # type: (str, str) -> None
    """Unpack the archive's site-packages under root once per build (shiv's own layout
    and lock, so its bootstrap finds them there); a failed unpack leaves nothing behind."""
    import shutil
    import zipfile

    import _bootstrap  # shiv's, at the archive's top level
    from _bootstrap.environment import Environment

    with zipfile.ZipFile(archive_path) as archive:
        env = Environment.from_json(archive.read("environment.json").decode())
        target = _bootstrap.cache_path(archive, root, env.build_id)
        if os.path.isdir(os.path.join(str(target), "site-packages")):
            return
        try:
            _bootstrap.extract_site_packages(archive, target)
        except BaseException:
            shutil.rmtree(str(target) + ".tmp", ignore_errors=True)
            raise


def main():
    # type: () -> None
    facts = this_interpreter()
    if not is_supported(facts):
        sys.stderr.write(NEEDS + "; this is " + describe(facts) + "\n")
        sys.exit(1)
    archive = os.path.realpath(sys.argv[0])
    root = unpack_root(home_of(archive))
    try:
        unpack(archive, root)
    except OSError as exc:
        sys.stderr.write("wireleap-relay: cannot unpack its libraries into {}: {} (it needs "
                         "about 60 MB there)\n".format(root, exc.strerror or exc))
        sys.exit(1)
    os.environ["SHIV_ROOT"] = root  # shiv's bootstrap looks here instead of ~/.shiv
    import _bootstrap

    _bootstrap.bootstrap()


if __name__ == "__main__":
    main()
