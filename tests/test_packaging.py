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


def test_the_package_installs_and_imports_outside_the_checkout(tmp_path):
    """pip install puts the monitor, the models and the page where any script finds them, under
    names that shadow no popular package; the console command serves the installed page."""
    import os
    import shutil
    import subprocess
    import sys

    source = tmp_path / "source"  # setuptools writes build/ and *.egg-info beside the sources: not in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "dashboard.py", "neural_network.py", "training_monitor.py"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "live_training_dashboard", source / "live_training_dashboard",
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--target", str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    top_level = {p.name for p in target.iterdir() if not p.name.endswith((".dist-info", "__pycache__"))}
    assert top_level == {"dashboard.py", "neural_network.py", "training_monitor.py", "live_training_dashboard", "bin"}
    assert (target / "bin" / "live-training-dashboard").exists()
    check = (
        "import training_monitor, neural_network, live_training_dashboard.run_store as store\n"
        "from live_training_dashboard.cli import streamlit_command\n"
        f"assert training_monitor.__file__.startswith({str(target)!r}), training_monitor.__file__\n"
        "command, env = streamlit_command(['--runs-dir', 's3://bucket/runs', '--port', '8600'])\n"
        "script = command[command.index('run') + 1]\n"
        f"assert script.startswith({str(target)!r}) and script.endswith('dashboard.py'), command\n"
        "assert env['DASHBOARD_RUNS_DIR'] == 's3://bucket/runs' and command[command.index('--server.port') + 1] == '8600'\n"
        "assert command[command.index('--runner.postScriptGC') + 1] == 'false'\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=env)  # not the checkout: only the installed copy is importable
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_the_console_command_rejects_bad_options_with_a_message(capsys):
    import pytest

    from live_training_dashboard.cli import streamlit_command

    for argv, message in ((["--port", "0"], "between 1 and 65535"), (["--runs-dir", " "], "cannot be empty")):
        with pytest.raises(SystemExit):
            streamlit_command(argv)
        assert message in capsys.readouterr().err
    command, env = streamlit_command(["--server.headless", "true"])  # streamlit's own options pass through
    assert command[-2:] == ["--server.headless", "true"] and command[command.index("run") + 1].endswith("dashboard.py")
