"""The relay operator's money: balance, accumulated sharetokens and withdrawals at a contract
(control.md §5, operations.md §3.11, §3.12).

Every check and message comes in Go's order and wording. A failure is a PayoutError whose
text is the one line the CLI shows before exiting 1.
"""

import json
import re
from typing import Any
from urllib.parse import urlsplit

import requests

from wireleap_relay.contract.client import RELAY_CONTRACT, ControlError, SignedClient
from wireleap_relay.identity import Identity

_INT64 = re.compile(r"[+-]?[0-9]+")
# Go's encoding/json escapes these inside strings; in JSON text they only occur in strings.
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
               "\u2029": "\\u2029"}


class PayoutError(Exception):
    """Fatal for `balance` or `withdraw`; the message is what the operator sees."""


def make_client(ident: Identity) -> SignedClient:
    """The CLI's client: it speaks relay-contract only (control.md §1.3)."""
    return SignedClient(ident, interfaces=(RELAY_CONTRACT,))


def contract_urls(config_path: str) -> list[str]:
    """The contract URLs of config.json, in file order.

    Like Go, the config is read but not validated: an operator must be able to see and
    withdraw earnings even while the relay's config has a problem.
    """
    try:
        with open(config_path, "rb") as f:
            obj = json.loads(f.read())
    except FileNotFoundError:
        raise PayoutError(f"{config_path}: no such file") from None
    except OSError as exc:
        raise PayoutError(f"{config_path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise PayoutError(f"{config_path}: not valid JSON: {exc}") from None
    contracts = obj.get("contracts") if isinstance(obj, dict) else None
    if not isinstance(obj, dict) or not isinstance(contracts, dict | None):
        raise PayoutError(f"{config_path}: contracts must be a JSON object of contract URL "
                          "to relay entry")
    return list(contracts or {})


def check_contract_url(url: str) -> str:
    """`url` if it can be requested. Go crashes on an unparsable --contract (operations.md
    §3.11) and retries unusable ones for 10 s; we say what is wrong at once."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise PayoutError(f"invalid contract URL {json.dumps(url)}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PayoutError(f"invalid contract URL {json.dumps(url)}: must be "
                          "http(s)://host[:port][/path]")
    return url


def balance(client: SignedClient, contract_url: str) -> dict[str, Any]:
    """The per-contract object that `balance` prints; the first failing request is fatal."""
    check_contract_url(contract_url)
    out: dict[str, Any] = {"contract": contract_url}
    for key, path, what in (("balance", "/payout/balance", "balance"),
                            ("tokens", "/payout/tokens", "accumulated tokens"),
                            ("withdrawal", "/payout/withdrawals", "withdrawal")):
        try:
            # String concatenation as in Go: a trailing "/" in the URL gives "//payout".
            out[key] = client.perform("GET", contract_url + path)
        except ControlError as exc:
            raise PayoutError(f"error while getting {what}: {_error_text(exc)}") from None
    return out


def render(obj: Any) -> str:
    """json.MarshalIndent(obj, "", "    ") as Go writes it (server key order kept)."""
    text = json.dumps(obj, indent=4, ensure_ascii=False)
    return re.sub("[<>&\u2028\u2029]", lambda m: _GO_ESCAPES[m.group()], text)


def parse_amount(text: str) -> int:
    """strconv.ParseInt(text, 10, 64), with Go's error texts."""
    if not _INT64.fullmatch(text):
        raise PayoutError(f"strconv.ParseInt: parsing {json.dumps(text)}: invalid syntax")
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise PayoutError(f"strconv.ParseInt: parsing {json.dumps(text)}: value out of range")
    return value


def withdraw(client: SignedClient, contract_url: str, destination: str, amount: str) -> str:
    """Request a withdrawal of `amount` (option text, smallest currency unit); returns the
    contract's answer byte for byte, outer whitespace trimmed (control.md §5.3)."""
    n = parse_amount(amount)
    if n <= 0:
        raise PayoutError(f"withdrawal request amount is invalid (<= 0): {n}")
    check_contract_url(contract_url)
    # "type" is a fixed placeholder in Go's relay too; field order is Go's struct order.
    body = {"amount": n, "type": "TODO", "destination": destination}
    raw: list[bytes] = []

    def keep_body(resp: requests.Response, *args: Any, **kwargs: Any) -> None:
        raw.append(resp.content)

    # perform() hands back decoded JSON; the operator gets the exact bytes, as in Go.
    client.session.hooks["response"].append(keep_body)
    try:
        client.perform("POST", contract_url + "/payout/withdrawals", body)
    except ControlError as exc:
        raise PayoutError(_error_text(exc)) from None
    finally:
        client.session.hooks["response"].remove(keep_body)
    return raw[-1].decode("utf-8", "replace").strip()


def _error_text(exc: ControlError) -> str:
    """Go prints an API error as its status JSON, anything else as the error text."""
    return exc.status.to_json() if exc.status is not None else str(exc)
