"""JSON laid out the way Go's encoding/json writes it: compact, keys in struct order."""

import json
from typing import Any


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def compact_bytes(obj: Any) -> bytes:
    return compact(obj).encode("utf-8")
