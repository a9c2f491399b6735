"""The single-file build: one executable .pyz that runs on every supported CPython.

    singlefile.py lock             rewrite contrib/singlefile.lock from setup.py's ranges
    singlefile.py build OUT VERSION_SETTINGS_PY
                                   build OUT from the lock and this source tree

Extension modules of different CPython versions coexist in one site-packages because their
file names carry the ABI tag (`_greenlet.cpython-312-x86_64-linux-gnu.so`), so the file
carries the binary wheels of every supported version, and the pure-Python files once. The
lock pins one version of each package for all interpreters, with the sha256 of every wheel
file, so a rebuild of the same commit downloads the same bytes and yields the same file.

Run it with the project's venv Python (it needs pip and shiv).
"""

import ast
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCK = os.path.join(ROOT, "contrib", "singlefile.lock")
LAUNCHER = os.path.join(ROOT, "wireleap_relay", "launcher.py")
ENTRY_POINT = "wireleap_relay.__main__:main"
SHEBANG = "/usr/bin/env python3"

# Keep in step with wireleap_relay/launcher.py's SUPPORTED range and setup.py.
PYTHONS = ("3.10", "3.11", "3.12", "3.13", "3.14")
# glibc 2.28 or newer (manylinux_2_28 and every older manylinux tag).
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_26_x86_64",
             "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux_2_12_x86_64", "manylinux2010_x86_64", "manylinux_2_5_x86_64",
             "manylinux1_x86_64")

# Files no relay ever loads: test suites and C sources shipped inside binary wheels.
UNUSED = re.compile(r"^(gevent/tests|gevent/testing|greenlet/tests|zope/interface/tests|"
                    r"zope/interface/common/tests)/|\.(c|h|cpp|hpp|pyx|pxd|pyi)$")
# Files that differ between the wheels of one release for different Pythons, where the
# oldest Python's copy serves them all: each wheel's own bookkeeping, and stable-ABI
# extensions (gevent builds its cffi loop `_corecffi.abi3.so` in every wheel).
OLDEST_SERVES_ALL = re.compile(r"^[^/]+\.dist-info/(RECORD|WHEEL)$|\.abi3\.so$")


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                   check=True)


def download(python: str, dest: str, *requirements: str) -> None:
    """Binary wheels for CPython `python` on x86_64 glibc Linux, whatever runs the build."""
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    pip("download", "--no-deps", "--only-binary=:all:", "--implementation", "cp",
        "--python-version", python, *platforms, "-d", dest, *requirements)


def install_requires() -> list[str]:
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            return ast.literal_eval(node.value)
    raise SystemExit("setup.py has no install_requires list")


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def project(wheel: str) -> str:
    return wheel.split("-")[0].lower().replace("_", "-").replace(".", "-")


def serves_every_python(wheel: str) -> bool:
    """A pure wheel, or a stable-ABI one built for the oldest supported Python or older."""
    python_tag, abi_tag = wheel[:-4].split("-")[-3:-1]
    return abi_tag == "none" or (abi_tag == "abi3" and int(python_tag[2:]) <= 310)


def lock() -> None:
    """Resolve with the oldest supported Python (the newest versions that still support
    it), then take each version-specific wheel for every other Python."""
    with tempfile.TemporaryDirectory() as tmp:
        oldest = os.path.join(tmp, PYTHONS[0])
        platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
        pip("download", "--only-binary=:all:", "--implementation", "cp", "--python-version",
            PYTHONS[0], *platforms, "-d", oldest, *install_requires())
        chosen: dict[str, list[tuple[str, str]]] = {}  # "name==version" -> [(python, wheel)]
        for wheel in sorted(os.listdir(oldest)):
            release = wheel.split("-")[1]
            pin = f"{project(wheel)}=={release}"
            chosen[pin] = [(PYTHONS[0], os.path.join(oldest, wheel))]
            if serves_every_python(wheel):
                continue
            for python in PYTHONS[1:]:
                dest = os.path.join(tmp, python)
                before = set(os.listdir(dest)) if os.path.isdir(dest) else set()
                download(python, dest, pin)
                (new,) = set(os.listdir(dest)) - before
                chosen[pin].append((python, os.path.join(dest, new)))
        lines = ["# Wheels of the single-file build (contrib/singlefile.py), for CPython",
                 f"# {', '.join(PYTHONS)} on x86_64 Linux with glibc 2.28 or newer.",
                 "# Written by `make lock` from setup.py's install_requires: do not edit.", "#"]
        for pin, wheels in chosen.items():
            for python, path in wheels:
                lines.append(f"# {pin}: {os.path.basename(path)}"
                             f"{'' if len(wheels) == 1 else ' (' + python + ')'}")
        lines.append("")
        for pin, wheels in chosen.items():
            hashes = [f"    --hash=sha256:{sha256(path)}" for _, path in wheels]
            lines.append(" \\\n".join([pin, *hashes]))
    with open(LOCK, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {LOCK}: {len(chosen)} packages")


def locked_wheels(dest: str) -> list[str]:
    """Every wheel the lock names, each file checked against its hash by pip."""
    for python in PYTHONS:
        download(python, dest, "--require-hashes", "-r", LOCK)
    return sorted(os.listdir(dest))


def unpack(wheels_dir: str, wheels: list[str], site_packages: str) -> None:
    """Merge the wheels into one site-packages. Two wheels may only put the same file in
    one place when their bytes agree (the pure-Python parts of a release), apart from
    OLDEST_SERVES_ALL; wheels go oldest Python first."""
    origin: dict[str, str] = {}
    for wheel in wheels:
        with zipfile.ZipFile(os.path.join(wheels_dir, wheel)) as archive:
            for info in archive.infolist():
                name = _installed_name(info.filename)
                if info.is_dir() or name is None or UNUSED.search(name):
                    continue
                target = os.path.join(site_packages, name)
                data = archive.read(info)
                if name in origin:
                    with open(target, "rb") as f:
                        same = f.read() == data
                    if not same and not OLDEST_SERVES_ALL.search(name):
                        raise SystemExit(f"{wheel} and {origin[name]} disagree on {name}")
                    continue
                origin[name] = wheel
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as f:
                    f.write(data)


def _installed_name(name: str) -> str | None:
    """Where a wheel's file goes in site-packages; None for scripts, headers and data."""
    parts = name.split("/")
    if parts[0].endswith(".data"):
        return "/".join(parts[2:]) if parts[1] in ("purelib", "platlib") else None
    return name


def copy_sources(site_packages: str, settings: str) -> None:
    """The relay's own package, with the settings of this build as `_build.py`."""
    target = os.path.join(site_packages, "wireleap_relay")
    shutil.copytree(os.path.join(ROOT, "wireleap_relay"), target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_build.py"))
    shutil.copyfile(settings, os.path.join(target, "_build.py"))


def finish(shiv_output: str, out: str) -> None:
    """shiv's archive with the launcher as `__main__.py`, so that the first code to run
    checks the interpreter and unpacks into the relay's home before shiv's bootstrap.
    Every entry gets mode 0644: the builder's umask must not reach the file."""
    with open(LAUNCHER, "rb") as f:
        launcher = f.read()
    with open(shiv_output, "rb") as f:
        shebang = f.readline()
    with zipfile.ZipFile(shiv_output) as source, open(out, "wb") as f:
        f.write(shebang)
        with zipfile.ZipFile(f, "w") as target:
            for info in source.infolist():
                data = launcher if info.filename == "__main__.py" else source.read(info)
                info.external_attr = 0o100644 << 16
                target.writestr(info, data)
    os.chmod(out, 0o755)


def build(out: str, settings: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wheels_dir = os.path.join(tmp, "wheels")
        site_packages = os.path.join(tmp, "site-packages")
        unpack(wheels_dir, locked_wheels(wheels_dir), site_packages)
        copy_sources(site_packages, settings)
        shiv_output = os.path.join(tmp, "shiv.pyz")
        env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
        subprocess.run([sys.executable, "-m", "shiv", "--reproducible",
                        "--site-packages", site_packages, "-p", SHEBANG, "-e", ENTRY_POINT,
                        "-o", shiv_output], check=True, env=env, stdout=subprocess.DEVNULL)
        finish(shiv_output, out)


def main(argv: list[str]) -> None:
    if argv[:1] == ["lock"] and len(argv) == 1:
        lock()
    elif argv[:1] == ["build"] and len(argv) == 3:
        build(argv[1], argv[2])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
