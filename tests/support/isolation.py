"""The test session's own BentoML store, reports folder and settings: import this first.

Importing it points BENTOML_HOME and ATTRITION_REPORTS_DIR at a fresh temporary folder and
clears DATABASE_URL, ATTRITION_ADMIN_DATABASE_URL and ATTRITION_DATA_DIR, so tests never
touch the user's model store or database. It must run before anything imports bentoml or
reads settings, which is why tests/conftest.py imports it before everything else; test
modules may then read its names.
"""

import os
import tempfile
from pathlib import Path

SESSION_HOME = Path(tempfile.mkdtemp(prefix="attrition-tests-"))
os.environ["BENTOML_HOME"] = str(SESSION_HOME / "bentoml")
os.environ["ATTRITION_REPORTS_DIR"] = str(SESSION_HOME / "reports")
os.environ.pop("DATABASE_URL", None)
os.environ.pop("ATTRITION_ADMIN_DATABASE_URL", None)
# Real extracts are only for the tests that ask for them, never a default.
REAL_DATA_DIR = os.environ.pop("ATTRITION_DATA_DIR", None)
