"""Test tools shipped in the package: the fake contract + directory and servicekey helpers."""
