"""Test code the self-tests and benchmarks share (pure library, no pytest); nothing outside them imports it.

``scripted`` (a Host playing back recorded commands), ``transcript`` (the transcript files it reads),
``sample`` (sample runs for the reports), ``synthetic`` (synthetic histories), ``sandbox`` (namespace pairs
for the traffic self-tests) and ``postgres`` (a throw-away PostgreSQL). ``selftest/test_architecture.py``
fails when a library module imports from here.
"""
