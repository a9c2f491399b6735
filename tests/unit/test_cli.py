"""The real command line, run as a subprocess (operations.md §1, §3.2, §3.10, §7)."""

import json
import os
import re
import subprocess
import sys

import pytest

from wireleap_relay import cli

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))

# operations.md §1.3, verbatim.
TOP_USAGE = """\
Usage: wireleap-relay COMMAND [OPTIONS]

Commands:
  help            Display this help message or help on a command
  init            Generate ed25519 keypair and TLS cert/key
  start           Start wireleap-relay daemon
  stop            Stop wireleap-relay daemon
  restart         Restart wireleap-relay daemon
  reload          Reload wireleap-relay daemon configuration
  status          Report wireleap-relay daemon status
  upgrade         Upgrade wireleap-relay to the latest version per directory
  rollback        Go back to the binary and config before the last upgrade
  check-config    Validate wireleap-relay config file
  balance         Show balance, pending sharetokens and last withdrawal
  withdraw        Withdraw available funds from balance
  version         Show version and exit

Run 'wireleap-relay help COMMAND' for more information on a command.
"""

INIT_USAGE = """\
Usage: wireleap-relay init [options]

Generate ed25519 keypair and TLS cert/key

Options:
  --force  Replace an existing identity (changes the public key)
"""

LOG_LINE = r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} "
SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?")
IDENTITY_FILES = ("key.seed", "key.pub", "relay-cert.pem", "relay-key.pem")


def run(home, *args):
    env = dict(os.environ, WIRELEAP_HOME=str(home), PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "wireleap_relay", *args], env=env,
                          capture_output=True, text=True, timeout=60, cwd=str(home))


def run_here(home, monkeypatch, capsys, *args):
    """The same CLI in this process (fast), for the variants of a subprocess-checked case."""
    monkeypatch.setenv("WIRELEAP_HOME", str(home))
    monkeypatch.setattr(sys, "argv", ["wireleap-relay"])
    try:
        code = cli.main(list(args))
    except SystemExit as exc:  # docopt's own -h handling
        code = exc.code or 0
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def snapshot(home):
    return {name: (home / name).read_bytes() for name in IDENTITY_FILES}


# --- help and usage errors -----------------------------------------------------------------

def test_top_usage_layout():
    lines = [line for line in TOP_USAGE.splitlines() if line.startswith("  ")]
    assert len(lines) == 13
    for line in lines:
        assert line[18] != " " and line[17] == " "  # descriptions start at column 19


@pytest.mark.parametrize("args", [("help",), ("-h",), ("--help",)])
def test_asked_for_help_is_no_error(tmp_path, args):
    """Help goes to stdout with exit 0 (Go: stderr, exit 2), so `| less` works."""
    result = run(tmp_path, *args)
    assert (result.returncode, result.stdout, result.stderr) == (0, TOP_USAGE, "")
    assert os.listdir(tmp_path) == []


def test_no_command_is_a_usage_error(tmp_path):
    result = run(tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", TOP_USAGE)


@pytest.mark.parametrize("args, problem", [
    (("UNKNOWN",), "unknown command 'UNKNOWN'"), (("log",), "unknown command 'log'"),
    (("genkey",), "unknown command 'genkey'"), (("Init",), "unknown command 'Init'"),
    (("help", "UNKNOWN"), "no help on 'UNKNOWN': no such command"),
    (("help", "help"), "no help on 'help': no such command"),
    (("help", "init", "start"), "no help on 'init start': no such command"),
])
def test_a_mistake_names_the_word(tmp_path, monkeypatch, capsys, args, problem):
    result = run_here(tmp_path, monkeypatch, capsys, *args)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"wireleap-relay: {problem}\n\n{TOP_USAGE}"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("command,text", [
    ("init", INIT_USAGE),
    ("start", "Usage: wireleap-relay start [options]\n\nStart wireleap-relay daemon\n\n"
              "Options:\n  --fg  Run in foreground, don't detach\n"),
    ("check-config", "Usage: wireleap-relay check-config\n\nValidate wireleap-relay config "
                     "file\n"),
    ("stop", "Usage: wireleap-relay stop\n\nStop wireleap-relay daemon\n"),
    ("status", "Usage: wireleap-relay status\n\nReport wireleap-relay daemon status\n\n"
               "Exit codes:\n  0     wireleap-relay is running\n"
               "  1     wireleap-relay is not running\n"
               "  2     could not tell if wireleap-relay is running or not\n"),
    ("version", "Usage: wireleap-relay version [options]\n\nShow version and exit\n\n"
                "Options:\n  -v  show verbose output\n"),
    ("upgrade", "Usage: wireleap-relay upgrade\n\n"
                "Upgrade wireleap-relay to the latest version per directory\n"),
    ("rollback", "Usage: wireleap-relay rollback\n\nGo back to the binary and config before "
                 "the last upgrade\n"),
    ("supervise-upgrade", "Usage: wireleap-relay supervise-upgrade [FROM_VERSION]\n\n"
                          "Supervise upgrade to a new version in a separate process "
                          "(internal command)\n"),
    ("migrate", "Usage: wireleap-relay migrate [FROM_VERSION]\n\n"
                "Migrate wireleap-relay files (internal command)\n"),
    # operations.md §1.4, verbatim.
    ("balance", "Usage: wireleap-relay balance [options]\n\n"
                "Show balance, pending sharetokens and last withdrawal\n\n"
                "Options:\n  --contract string  Service contract URL\n"),
    ("withdraw", "Usage: wireleap-relay withdraw [options]\n\n"
                 "Withdraw available funds from balance\n\n"
                 "Options:\n"
                 "  --amount string       Withdraw given amount from the balance\n"
                 "  --contract string     Service contract URL\n"
                 "  --destination string  Withdraw to this destination\n"),
])
def test_help_command(tmp_path, monkeypatch, capsys, command, text):
    result = run_here(tmp_path, monkeypatch, capsys, "help", command)
    assert (result.returncode, result.stdout, result.stderr) == (0, text, "")


def test_help_init_subprocess(tmp_path):
    result = run(tmp_path, "help", "init")
    assert (result.returncode, result.stdout, result.stderr) == (0, INIT_USAGE, "")


def test_command_help_flag_exits_zero(tmp_path):
    result = run(tmp_path, "init", "-h")
    assert result.returncode == 0
    assert "Usage: wireleap-relay init" in result.stdout + result.stderr
    assert os.listdir(tmp_path) == []  # nothing initialised


@pytest.mark.parametrize("args", [("init", "--help"), ("version", "-h"),
                                  ("check-config", "--help")])
def test_command_help_flag_in_process(tmp_path, monkeypatch, capsys, args):
    result = run_here(tmp_path, monkeypatch, capsys, *args)
    assert result.returncode == 0
    assert f"Usage: wireleap-relay {args[0]}" in result.stdout + result.stderr
    assert os.listdir(tmp_path) == []


def test_unknown_flag_is_usage_error(tmp_path):
    result = run(tmp_path, "init", "--bogus")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"wireleap-relay: init: unexpected '--bogus'\n\n{INIT_USAGE}"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args, problem", [
    (("start", "extra"), "start: unexpected 'extra'"),
    (("version", "-v=yes"), "version: '-v=yes' can only be true or false"),
    (("balance", "--contract"), "balance: '--contract' needs a value"),
    (("withdraw", "--amount", "3", "--bogus", "x"),
     "withdraw: unexpected '--bogus'; unexpected 'x'"),
    (("migrate", "1.0.0", "2.0.0"), "migrate: unexpected '2.0.0'"),
])
def test_bad_arguments_are_named(tmp_path, monkeypatch, capsys, args, problem):
    result = run_here(tmp_path, monkeypatch, capsys, *args)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"wireleap-relay: {problem}\n\nUsage: wireleap-relay ")


def test_usage_uses_program_name_as_typed(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["./wireleap-relay"])
    assert cli.main(["help", "init"]) == 0
    assert capsys.readouterr().out == INIT_USAGE.replace("Usage: wireleap-relay",
                                                         "Usage: ./wireleap-relay")
    monkeypatch.setattr(sys, "argv", ["/opt/relay/my-relay"])
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: /opt/relay/my-relay COMMAND [OPTIONS]\n")
    assert err.endswith("Run '/opt/relay/my-relay help COMMAND' for more information on a "
                        "command.\n")


# --- Go flag spellings, through the cheap `version` command --------------------------------

def test_version(tmp_path):
    result = run(tmp_path, "version")
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and result.stdout == lines[0] + "\n"
    assert SEMVER.fullmatch(lines[0]), lines[0]


INTERFACE_LINES = [
    "relay-contract interface version 0.1.0",
    "relay-dir interface version 0.2.0",
    "relay-relay interface version 0.2.0",
    "client-relay interface version 0.2.0",
]


@pytest.mark.parametrize("flag", ["-v", "-v=true"])
def test_version_verbose(tmp_path, flag):
    result = run(tmp_path, "version", flag)
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert SEMVER.fullmatch(lines[0])
    assert lines[1:] == INTERFACE_LINES


@pytest.mark.parametrize("flag", ["-v", "--v", "-v=true", "--v=true"])
def test_version_verbose_in_process(tmp_path, monkeypatch, capsys, flag):
    result = run_here(tmp_path, monkeypatch, capsys, "version", flag)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines()[1:] == INTERFACE_LINES


def test_version_verbose_false(tmp_path, monkeypatch, capsys):
    plain = run_here(tmp_path, monkeypatch, capsys, "version")
    result = run_here(tmp_path, monkeypatch, capsys, "version", "-v=false")
    assert result.returncode == 0
    assert result.stdout == plain.stdout and len(result.stdout.splitlines()) == 1


def test_version_bad_boolean(tmp_path, monkeypatch, capsys):
    result = run_here(tmp_path, monkeypatch, capsys, "version", "-v=yes")
    assert result.returncode == 2 and result.stdout == ""
    assert "Usage: wireleap-relay version [options]" in result.stderr


# --- init ----------------------------------------------------------------------------------

def test_init(tmp_path):
    result = run(tmp_path, "init")
    assert result.returncode == 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    expected = [
        f"writing ed25519 private key seed to {tmp_path}/key.seed",
        f"writing ed25519 public key to {tmp_path}/key.pub",
        f"Writing ed25519 certificate to {tmp_path}/relay-cert.pem",
        f"Writing ed25519 certificate key to {tmp_path}/relay-key.pem",
    ]
    assert len(lines) == len(expected)
    for line, message in zip(lines, expected, strict=True):
        assert re.fullmatch(LOG_LINE + re.escape(message), line), line
    assert sorted(os.listdir(tmp_path)) == sorted(IDENTITY_FILES)
    assert len((tmp_path / "key.seed").read_bytes()) == 45


def test_second_init_refuses(tmp_path):
    assert run(tmp_path, "init").returncode == 0
    before = snapshot(tmp_path)
    result = run(tmp_path, "init")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "refusing to overwrite the existing relay identity" in result.stderr
    assert "init --force" in result.stderr
    assert snapshot(tmp_path) == before


def test_init_refuses_if_any_identity_file_exists(tmp_path, monkeypatch, capsys):
    (tmp_path / "relay-cert.pem").write_text("operator's cert")
    result = run_here(tmp_path, monkeypatch, capsys, "init")
    assert result.returncode == 1
    assert str(tmp_path / "relay-cert.pem") in result.stderr
    assert os.listdir(tmp_path) == ["relay-cert.pem"]


def test_init_force_replaces_identity(tmp_path):
    assert run(tmp_path, "init").returncode == 0
    before = snapshot(tmp_path)
    result = run(tmp_path, "init", "--force")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 4
    after = snapshot(tmp_path)
    for name in IDENTITY_FILES:
        assert after[name] != before[name], name


@pytest.mark.parametrize("flag", ["-force", "--force=true", "-force=true"])
def test_init_force_go_spellings(tmp_path, monkeypatch, capsys, flag):
    assert run_here(tmp_path, monkeypatch, capsys, "init").returncode == 0
    before = snapshot(tmp_path)
    result = run_here(tmp_path, monkeypatch, capsys, "init", flag)
    assert result.returncode == 0, result.stderr
    after = snapshot(tmp_path)
    assert all(after[name] != before[name] for name in IDENTITY_FILES)


def test_init_force_false_still_refuses(tmp_path, monkeypatch, capsys):
    assert run_here(tmp_path, monkeypatch, capsys, "init").returncode == 0
    before = snapshot(tmp_path)
    assert run_here(tmp_path, monkeypatch, capsys, "init", "--force=false").returncode == 1
    assert snapshot(tmp_path) == before


# --- check-config --------------------------------------------------------------------------

VALID = {"address": "0.0.0.0:13490",
         "contracts": {"https://c.example.com": {"role": "fronting",
                                                 "address": "wireleap://relay.example.com"}}}


def test_check_config_missing(tmp_path):
    result = run(tmp_path, "check-config")
    assert result.returncode == 1
    assert result.stdout == (f"{tmp_path}/config.json: no such file (create it, see the "
                             "README's Configuration section)\n")
    assert result.stderr == ""


def test_check_config_not_json(tmp_path, monkeypatch, capsys):
    (tmp_path / "config.json").write_text("{")
    result = run_here(tmp_path, monkeypatch, capsys, "check-config")
    assert result.returncode == 1
    assert result.stdout.startswith(f"{tmp_path}/config.json: not valid JSON: ")
    assert len(result.stdout.splitlines()) == 1


def test_check_config_lists_every_problem(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"bufsize": 0, "timeout": "300ms", "colour": 1}))
    result = run(tmp_path, "check-config")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "address: has to be set",
        "timeout: invalid duration '300ms': unknown unit 'ms' (use s, m, h or d; "
        "sub-second units are not supported)",
        "bufsize: must be between 1 and 16777216 bytes, got 0",
        "contracts: at least one service contract has to be set",
    ]
    assert result.stderr == "warning: colour: unknown key, ignored\n"


def test_check_config_ok(tmp_path, monkeypatch, capsys):
    (tmp_path / "config.json").write_text(json.dumps(VALID))
    result = run_here(tmp_path, monkeypatch, capsys, "check-config")
    assert (result.returncode, result.stdout, result.stderr) == (0, "OK\n", "")


def test_check_config_shows_the_typo_behind_an_error(tmp_path):
    cfg = {"adress": "0.0.0.0:13490", "contracts": VALID["contracts"]}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    result = run(tmp_path, "check-config")
    assert (result.returncode, result.stdout) == (1, "address: has to be set\n")
    assert result.stderr == \
        "warning: adress: unknown key, ignored (did you mean address?)\n"


def test_check_config_warnings_on_stderr(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**VALID, "colour": "blue"}))
    result = run(tmp_path, "check-config")
    assert (result.returncode, result.stdout) == (0, "OK\n")
    assert result.stderr == "warning: colour: unknown key, ignored\n"


def test_check_config_reads_only_config_json(tmp_path, monkeypatch, capsys):
    (tmp_path / "config.json.next").write_text(json.dumps(VALID))
    result = run_here(tmp_path, monkeypatch, capsys, "check-config")
    assert result.returncode == 1
    assert "config.json: no such file" in result.stdout


HEAVY = ("gevent", "requests", "nacl", "cryptography", "h2", "wireleap_relay.daemon",
         "wireleap_relay.upgrade.manual")


@pytest.mark.parametrize("args", [["version"], ["status"], ["check-config"], ["help"], []])
def test_plain_commands_load_no_network_stack(tmp_path, args):
    """What makes `version` answer at once: neither gevent nor the relay's machinery is
    imported for a command that needs neither."""
    probe = ("import sys\n"
             f"sys.argv = ['wireleap-relay', *{args!r}]\n"
             "from wireleap_relay.__main__ import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             f"print('loaded:', [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=dict(os.environ, WIRELEAP_HOME=str(tmp_path)), timeout=60)
    assert done.stderr.splitlines()[-1] == "loaded: []"


def test_serving_commands_patch_with_gevent_first():
    from wireleap_relay.__main__ import needs_gevent

    for argv in (["start", "--fg"], ["worker"], ["upgrade"], ["balance"], ["rollback"]):
        assert needs_gevent(argv), argv
    for argv in ([], ["version"], ["status"], ["stop"], ["--help"], ["-h"]):
        assert not needs_gevent(argv), argv
