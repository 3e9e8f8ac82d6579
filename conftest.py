"""Thin root conftest: the suite's pytest side lives in fixtures/, loaded as plugins."""

pytest_plugins = [
    "fixtures.lab_options",
    "fixtures.lab_session",
    "fixtures.progress",
    "fixtures.recording",
    "fixtures.summary",
    "fixtures.xdist_support",
]
