"""wireleap-relay: a Python relay for the Wireleap network."""
