"""Network usage caps (relay 0.6, control.md §6.1, §6.3): bytes relayed per contract and
period, saved in stats.json, archived when a period ends, and the thresholds at which the
relay leaves a contract's directory and ends its streams."""
