"""Helpers shared by the self-tests and the emulated lab (pure library, no pytest)."""
