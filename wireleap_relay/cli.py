"""The command line: docopt usage texts are the help, each command a small function.

Each command imports the modules it needs when it runs: the daemon, the control plane and
the upgrade machinery cost a quarter of a second to import, which `version` should not pay.

Texts follow the Go relay (operations.md §1); exit codes do not, on purpose: help that was
asked for (`help`, `-h`, `--help`, `help COMMAND`, `COMMAND -h`) goes to stdout with exit 0,
as it is no error (Go exits 2 and writes to stderr); a mistake names the word that was
wrong, then shows the usage on stderr, exit 2.
"""

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from docopt import DocoptExit, docopt

from wireleap_relay import config, home, lifecycle, version

log = logging.getLogger("wireleap_relay")

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class Command:
    name: str
    description: str
    run: Callable[[dict], int]
    options: tuple[tuple[str, str], ...] = ()  # (option with its argument, description)
    arguments: str = ""  # positional arguments in docopt syntax, e.g. "[FROM_VERSION]"
    extra: str = ""  # an extra section (e.g. exit codes) shown by `help COMMAND`
    hidden: bool = False

    def flag_names(self) -> tuple[set[str], set[str]]:
        """The names of its boolean options and of those that take a value, dashes off."""
        booleans = {opt.split()[0].lstrip("-") for opt, _ in self.options if " " not in opt}
        strings = {opt.split()[0].lstrip("-") for opt, _ in self.options if " " in opt}
        return booleans, strings

    def usage(self, prog: str) -> str:
        text = f"Usage: {prog} {self.name}{' [options]' if self.options else ''}"
        text += f"{' ' + self.arguments if self.arguments else ''}\n\n"
        text += self.description + "\n"
        if self.options:
            width = max(len(opt) for opt, _ in self.options) + 2
            text += "\nOptions:\n" + "".join(
                f"  {opt:<{width}}{desc}\n" for opt, desc in self.options)
        if self.extra:
            text += "\n" + self.extra
        return text


def cmd_init(args: dict) -> int:
    from wireleap_relay import identity

    where = home.current()
    present = identity.exists(where)
    if present and not args["--force"]:
        print(f"refusing to overwrite the existing relay identity ({', '.join(present)}): "
              "a new identity changes the relay's public key. Run `init --force` to "
              "replace it.", file=sys.stderr)
        return EXIT_FAIL
    identity.create(where, log.info)
    return EXIT_OK


def cmd_check_config(args: dict) -> int:
    try:
        _, warnings = config.load(home.current().config)
    except config.ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        for warning in exc.warnings:  # a misspelt key explains a missing one
            print(f"warning: {warning}", file=sys.stderr)
        return EXIT_FAIL
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print("OK")
    return EXIT_OK


def cmd_start(args: dict) -> int:
    where = home.current()
    if not args["--fg"]:
        return lifecycle.start(where, log.info)
    from wireleap_relay import forkserver, worker

    # The fork server first, while this process runs nothing: importing the daemon starts
    # a gevent hub (urllib3 opens a socket at import), which a fork must not copy.
    forks = forkserver.ForkServer.start(lambda: worker.run(where))
    from wireleap_relay import daemon

    try:
        return daemon.run_foreground(where, forks)
    except daemon.Fatal as exc:
        log.error("%s", exc)
        return EXIT_FAIL


def cmd_worker(args: dict) -> int:
    from wireleap_relay import worker

    return worker.run(home.current())


def cmd_reload(args: dict) -> int:
    """Check the config here first, so a broken one is refused where the operator sees it
    (the daemon checks again and keeps its running config if anything is wrong)."""
    where = home.current()
    try:
        config.load(where.config)
    except config.ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        print("not reloading: the running relay keeps its config")
        return EXIT_FAIL
    return lifecycle.reload(where, log.info)


def cmd_stop(args: dict) -> int:
    return lifecycle.stop(home.current(), log.info)


def cmd_restart(args: dict) -> int:
    return lifecycle.restart(home.current(), log.info)


def cmd_status(args: dict) -> int:
    code, message = lifecycle.status(home.current())
    print(message)
    return code


def cmd_balance(args: dict) -> int:
    from wireleap_relay import identity
    from wireleap_relay.contract import payout

    where = home.current()
    try:
        urls = payout.contract_urls(where.config)
        if args["--contract"]:
            urls = [args["--contract"]]  # need not be in the config
        else:
            log.info("no contract specified, listing balance for all contracts...")
        client = payout.make_client(identity.load(where))
        # Each contract in turn (Go's loop queried the same one every time).
        for url in urls:
            print(payout.render(payout.balance(client, url)), flush=True)
    except (payout.PayoutError, identity.IdentityError) as exc:
        log.error("%s", exc)
        return EXIT_FAIL
    return EXIT_OK


def cmd_withdraw(args: dict) -> int:
    from wireleap_relay import identity
    from wireleap_relay.contract import payout

    where = home.current()
    try:
        payout.contract_urls(where.config)  # unused, but Go refuses to go on without it
        for name in ("contract", "destination", "amount"):
            if not args[f"--{name}"]:
                raise payout.PayoutError(f"{name} has to be set")
        client = payout.make_client(identity.load(where))
        print(payout.withdraw(client, args["--contract"], args["--destination"],
                              args["--amount"]))
    except (payout.PayoutError, identity.IdentityError) as exc:
        log.error("%s", exc)
        return EXIT_FAIL
    return EXIT_OK


def cmd_upgrade(args: dict) -> int:
    from wireleap_relay.upgrade import manual

    return manual.upgrade(home.current())


def cmd_rollback(args: dict) -> int:
    from wireleap_relay.upgrade import UpgradeError, lock, rollback

    where = home.current()
    try:
        locked = lock.acquire(where)
    except UpgradeError as exc:
        log.error("error: %s", exc)
        return EXIT_FAIL
    try:
        rollback.rollback(where)
    except UpgradeError as exc:
        log.error("rollback failed: %s", exc)
        return EXIT_FAIL
    finally:
        os.close(locked)
    return EXIT_OK


def cmd_supervise_upgrade(args: dict) -> int:
    from wireleap_relay.upgrade import supervise

    return supervise.supervise(home.current(), args["FROM_VERSION"] or version.software_version())


def cmd_migrate(args: dict) -> int:
    from wireleap_relay.upgrade import UpgradeError, migrate

    if not args["FROM_VERSION"]:
        log.error("which version to migrate from? usage: `wireleap-relay migrate 1.2.3`")
        return EXIT_FAIL
    try:
        migrate.migrate(home.current(), args["FROM_VERSION"], version.software_version())
    except UpgradeError as exc:
        log.error("%s", exc)
        return EXIT_FAIL
    return EXIT_OK


def cmd_version(args: dict) -> int:
    lines = version.verbose_lines() if args["-v"] else [version.software_version()]
    print("\n".join(lines))
    return EXIT_OK


COMMANDS: tuple[Command, ...] = (
    Command("worker", "Serve streams for the master process (internal command)", cmd_worker,
            hidden=True),
    Command("help", "Display this help message or help on a command", lambda a: EXIT_USAGE),
    Command("init", "Generate ed25519 keypair and TLS cert/key", cmd_init,
            options=(("--force", "Replace an existing identity (changes the public key)"),)),
    Command("start", "Start wireleap-relay daemon", cmd_start,
            options=(("--fg", "Run in foreground, don't detach"),)),
    Command("stop", "Stop wireleap-relay daemon", cmd_stop),
    Command("restart", "Restart wireleap-relay daemon", cmd_restart),
    Command("reload", "Reload wireleap-relay daemon configuration", cmd_reload),
    Command("status", "Report wireleap-relay daemon status", cmd_status,
            extra="Exit codes:\n  0     wireleap-relay is running\n"
                  "  1     wireleap-relay is not running\n"
                  "  2     could not tell if wireleap-relay is running or not\n"),
    Command("upgrade", "Upgrade wireleap-relay to the latest version per directory",
            cmd_upgrade),
    Command("rollback", "Go back to the binary and config before the last upgrade",
            cmd_rollback),
    Command("check-config", "Validate wireleap-relay config file", cmd_check_config),
    # Option texts as operations.md §1.4 shows them; docopt reads "string" as the argument.
    Command("balance", "Show balance, pending sharetokens and last withdrawal", cmd_balance,
            options=(("--contract string", "Service contract URL"),)),
    Command("withdraw", "Withdraw available funds from balance", cmd_withdraw,
            options=(("--amount string", "Withdraw given amount from the balance"),
                     ("--contract string", "Service contract URL"),
                     ("--destination string", "Withdraw to this destination"))),
    Command("version", "Show version and exit", cmd_version,
            options=(("-v", "show verbose output"),)),
    Command("supervise-upgrade", "Supervise upgrade to a new version in a separate process "
            "(internal command)", cmd_supervise_upgrade, arguments="[FROM_VERSION]",
            hidden=True),
    Command("migrate", "Migrate wireleap-relay files (internal command)", cmd_migrate,
            arguments="[FROM_VERSION]", hidden=True),
)


def top_usage(prog: str) -> str:
    listed = [c for c in COMMANDS if not c.hidden]
    lines = [f"Usage: {prog} COMMAND [OPTIONS]", "", "Commands:"]
    lines += [f"  {c.name:<16}{c.description}" for c in listed]
    lines += ["", f"Run '{prog} help COMMAND' for more information on a command."]
    return "\n".join(lines) + "\n"


def _find(name: str) -> Command | None:
    return next((c for c in COMMANDS if c.name == name), None)


def _go_style_flags(argv: list[str], command: Command) -> list[str]:
    """Accept the Go flag spellings older scripts use: `-fg`, `--fg=true`, `--fg=false`,
    `-contract URL`."""
    booleans, strings = command.flag_names()
    out = []
    is_value = False  # the argument of a string option, e.g. "-3" in `--amount -3`
    for arg in argv:
        name, eq, value = arg.lstrip("-").partition("=")
        if is_value:
            out.append(arg)
            is_value = False
        elif arg.startswith("-") and name in booleans and value in ("", "true", "false"):
            if value != "false":
                out.append(("-" if len(name) == 1 else "--") + name)
        elif arg.startswith("-") and name in strings:
            out.append("--" + arg.lstrip("-"))
            is_value = not eq
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Usage lines name the program as it was typed (`./wireleap-relay`), like Go's argv[0].
    prog = sys.argv[0] if sys.argv and sys.argv[0] else "wireleap-relay"
    if os.path.basename(prog) == "__main__.py":
        prog = "wireleap-relay"
    if not argv:
        sys.stderr.write(top_usage(prog))
        return EXIT_USAGE
    if argv[0] in ("help", "-h", "--help"):
        return _help(prog, argv[1:] if argv[0] == "help" else [])
    command = _find(argv[0])
    if command is None:
        return _mistake(prog, f"unknown command '{argv[0]}'", top_usage(prog))
    usage = command.usage(prog)
    try:
        args = docopt(usage, [command.name] + _go_style_flags(argv[1:], command),
                      default_help=True)
    except DocoptExit:
        return _mistake(prog, f"{command.name}: {_what_is_wrong(argv[1:], command)}", usage)
    return command.run(args)


def _help(prog: str, topic: list[str]) -> int:
    if not topic:
        sys.stdout.write(top_usage(prog))
        return EXIT_OK
    wanted = _find(topic[0])
    if len(topic) > 1 or wanted is None or wanted.name == "help":
        return _mistake(prog, f"no help on '{' '.join(topic)}': no such command",
                        top_usage(prog))
    sys.stdout.write(wanted.usage(prog))
    return EXIT_OK


def _mistake(prog: str, problem: str, usage: str) -> int:
    sys.stderr.write(f"{prog}: {problem}\n\n{usage}")
    return EXIT_USAGE


def _what_is_wrong(words: list[str], command: Command) -> str:
    """The words of a command line docopt refused, judged by the rules _go_style_flags
    follows (Go's flag spellings included)."""
    booleans, strings = command.flag_names()
    wrong, positional, is_value = [], 0, False
    for word in words:
        name, eq, value = word.lstrip("-").partition("=")
        if is_value:
            is_value = False
        elif word.startswith("-") and name in booleans:
            if value not in ("", "true", "false"):
                wrong.append(f"'{word}' can only be true or false")
        elif word.startswith("-") and name in strings:
            is_value = not eq
        elif word.startswith("-") or positional >= command.arguments.count("["):
            wrong.append(f"unexpected '{word}'")
        else:
            positional += 1
    if is_value:
        wrong.append(f"'{words[-1]}' needs a value")
    return "; ".join(wrong) if wrong else "invalid arguments"
