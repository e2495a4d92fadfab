"""Helpers shared by the tests and the benchmark (bench/): payloads, databases, servers.

Plain functions and classes, no fixtures (those are in tests/conftest.py). Importing this
package or any module of it changes nothing in the environment, except `isolation`, which
tests/conftest.py imports first (the benchmark never does).
"""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
