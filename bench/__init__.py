"""Benchmark of the engine against the seed script's loop and a bare loop: ``python -m bench``.

Development tooling: the engine never imports it. See ``bench.cli`` for the sections.
"""
