"""The dependency lists agree: pyproject.toml is what users of the package get, requirements*.txt
what `make` installs. A floor raised in one and not the other would break one of them."""

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def requirement_lines(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return sorted(line.strip() for line in lines if line.strip() and not line.startswith(("#", "-r")))


def test_requirements_files_match_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert requirement_lines("requirements.txt") == sorted(project["dependencies"])
    assert requirement_lines("requirements-dev.txt") == sorted(project["optional-dependencies"]["dev"])
