"""Network usage while tracking is off (control.md §6.1): what the status API and the
metrics show for usage and caps until the usage tracker (`network_usage`) is configured."""


class UsageOff:
    """The master's `usage` when nothing is tracked: no period, no caps, nothing used."""

    def status_json(self) -> dict | None:
        return None

    def contract_json(self, contract_pk_b64: str) -> dict:
        return {"network_cap": None, "network_usage": 0, "network_cap_reached": False}
