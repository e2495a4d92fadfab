"""`make bench` runs this file; the benchmark is the `bench` package (`python -m bench` too).

bench/__init__.py says what it measures; `--help` lists the options.
"""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repository, not bench/
    runpy.run_module("bench", run_name="__main__")
