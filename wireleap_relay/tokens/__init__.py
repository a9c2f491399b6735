"""Sharetokens the relay accepted: their durable store and, later, their submission."""
