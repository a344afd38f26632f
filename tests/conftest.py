import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True, scope="session")
def runs_folder(tmp_path_factory):
    """The dashboard saves runs: keep every test's runs out of the checkout's ./runs."""
    import os

    folder = tmp_path_factory.mktemp("runs")
    os.environ["DASHBOARD_RUNS_DIR"] = str(folder)
    return folder
