"""The upgrade's pure parts: version order, the sha512 line of the signed text, the y/N
prompt, download progress, migrations (operations.md §3.15, §6.2, §6.5, §6.6, §6.8)."""

import io
import os

import pytest

from wireleap_relay import semver, skipversion
from wireleap_relay.home import Home
from wireleap_relay.upgrade import UpgradeError, download, manual, migrate, verify

ARTIFACT = "wireleap-relay_linux-amd64"


def test_precedence_orders_like_semver():
    ordered = ["0.6.1", "0.7.0-5-gabc1234", "0.7.0-alpha", "0.7.0-alpha.1", "0.7.0-alpha.beta",
               "0.7.0", "0.7.1", "0.10.0", "1.0.0"]
    assert sorted(reversed(ordered), key=semver.precedence) == ordered
    assert semver.precedence("1.2.3+build.5") == semver.precedence("1.2.3")
    assert semver.newer("0.7.1", "0.7.0-24-g702ff74") and not semver.newer("0.7.0", "0.7.0")
    with pytest.raises(ValueError, match="'v1.2.3' is not a semantic version"):
        semver.precedence("v1.2.3")


def test_sha512_comes_from_the_artifact_line_only():
    digest = "ab" * 64
    text = (f"wireleap-relay 0.7.1\n\n    $ sha256sum {ARTIFACT}\n      {'cd' * 32}  {ARTIFACT}\n"
            f"      {'ef' * 64}  wireleap-relay_darwin-amd64\n"
            f"      {digest}  {ARTIFACT}\r\n")
    assert verify.sha512_in(text) == digest
    with pytest.raises(UpgradeError, match="sha512 sum of wireleap-relay_linux-amd64 not found"):
        verify.sha512_in(f"{digest}  {ARTIFACT}.old\n")


def test_progress_on_a_terminal_and_in_a_log():
    terminal, lines = io.StringIO(), []
    progress = download.Progress(lines.append, terminal)
    progress.begin("http://x/f", "/q/f")
    for done in (0, 50, 50, 100):
        progress.advance(done, 100)
    progress.end()
    assert terminal.getvalue() == "\rDownloading http://x/f to /q/f... 0%" \
                                  "\rDownloading http://x/f to /q/f... 50%" \
                                  "\rDownloading http://x/f to /q/f... 100%\n"
    assert lines == []
    plain = download.Progress(lines.append)
    plain.begin("http://x/f", "/q/f")
    plain.advance(50, 100)
    plain.end()
    assert lines == ["Downloading http://x/f to /q/f..."]


@pytest.mark.parametrize("typed,answer", [
    ("y\n", True), ("YES\n", True), (" yes \n", True),
    ("n\n", False), ("no\n", False), ("\n", False), ("", False),
    ("what\ny\n", True), ("what\nhuh\nno\n", False), ("a\nb\nc\ny\n", None),
])
def test_confirm(capsys, typed, answer):
    assert manual.confirm("0.7.1", "0.7.2", io.StringIO(typed)) is answer
    out = capsys.readouterr().out
    assert out.startswith("Proceed with upgrade from 0.7.1 to 0.7.2? (y/N) ")
    if answer is None:
        assert out.endswith("Response 'c' not understood. Failed to get an answer 3 times. "
                            "Aborting.\n")


@pytest.fixture
def home(tmp_path):
    (tmp_path / "config.json").write_bytes(b'{"address": "0.0.0.0:13490"}')
    os.chmod(tmp_path / "config.json", 0o600)
    return Home(str(tmp_path))


def test_migrate_copies_the_config_as_it_is(home):
    migrate.migrate(home, "0.7.0", "0.7.1")
    with open(home.config_next, "rb") as f:
        assert f.read() == b'{"address": "0.0.0.0:13490"}'
    assert os.stat(home.config_next).st_mode & 0o777 == 0o600


def test_migrations_newer_than_the_old_version_run_in_order(home, monkeypatch, caplog):
    ran = []
    monkeypatch.setattr(migrate, "MIGRATIONS", tuple(
        migrate.Migration(v, f"m{v}", lambda path, v=v: ran.append(v))
        for v in ("0.9.0", "0.7.0", "0.8.0", "0.8.1")))
    caplog.set_level("INFO")
    migrate.migrate(home, "0.7.0", "0.8.1")
    assert ran == ["0.8.0", "0.8.1"]
    assert "running 0.8.0 migration 'm0.8.0' for wireleap-relay 0.8.1..." in caplog.messages


def test_failing_migration_and_bad_version(home, monkeypatch):
    def broken(path):
        raise ValueError("cannot read it")
    monkeypatch.setattr(migrate, "MIGRATIONS", (migrate.Migration("0.8.0", "broken", broken),))
    with pytest.raises(UpgradeError, match="FAILED to apply migration: cannot read it"):
        migrate.migrate(home, "0.7.0", "0.8.0")
    with pytest.raises(UpgradeError, match="could not parse supplied version '1.2'"):
        migrate.migrate(home, "1.2", "0.8.0")


def test_skip_is_written_quoted_and_said(tmp_path):
    said = []
    skipversion.skip(str(tmp_path), "0.7.2", said.append)
    assert (tmp_path / ".skip-upgrade-version").read_text() == '"0.7.2"'
    assert said == ["Skipping version 0.7.2"]
    skipversion.skip(str(tmp_path / "missing"), "0.7.2", said.append)
    assert said[-1].startswith("Could not persist skipped version 0.7.2: ")


def test_the_switch_never_leaves_the_home_without_a_relay_or_config(tmp_path, monkeypatch):
    """After every rename or link of the switch, `wireleap-relay` and `config.json` exist
    (a crash, or a restart by systemd or cron, at any step finds something to run)."""
    from wireleap_relay.upgrade import supervise

    home = Home(str(tmp_path))
    for path, text in ((home.binary, "old"), (home.binary_next, "new"),
                       (home.config, "{}"), (home.config_next, '{"new": 1}')):
        with open(path, "w") as f:
            f.write(text)
    steps = []

    def checked(real):
        def step(*args, **kwargs):
            result = real(*args, **kwargs)
            steps.append((real.__name__, os.path.exists(home.binary),
                          os.path.exists(home.config)))
            return result
        return step

    for name in ("replace", "link", "unlink", "rename"):
        monkeypatch.setattr(supervise.os, name, checked(getattr(os, name)))
    supervise._switch(home)
    monkeypatch.undo()
    assert steps and all(binary and config for _, binary, config in steps), steps
    assert open(home.binary).read() == "new" and open(home.binary_prev).read() == "old"
    assert open(home.config).read() == '{"new": 1}' and open(home.config_prev).read() == "{}"
    assert not os.path.exists(home.binary_next) and not os.path.exists(home.config_next)


def test_rollback_without_a_previous_version_changes_nothing(tmp_path):
    from wireleap_relay.upgrade import rollback

    home = Home(str(tmp_path))
    with open(home.binary, "w") as f:
        f.write("current")
    with pytest.raises(UpgradeError) as caught:
        rollback.rollback(home)
    assert str(caught.value) == (
        f"there is no previous version to go back to (no wireleap-relay.prev or "
        f"config.json.prev in {tmp_path}); nothing was changed")
    assert os.listdir(tmp_path) == ["wireleap-relay"]
