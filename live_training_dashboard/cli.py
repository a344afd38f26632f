"""`live-training-dashboard`: start the page from an installed package (or a checkout).

    live-training-dashboard [--runs-dir DIR|URL] [--port 8501] [any `streamlit run` option]

The runs folder may be a local path or an fsspec URL (s3://bucket/runs with the s3 extra,
sftp://host/path, ...): the page lists and follows every run written there, from the page's
own Train button, a user's script or a torchrun job.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path


def page_script() -> Path:
    """dashboard.py: beside the package in a checkout, or installed as a top-level module."""
    beside = Path(__file__).resolve().parent.parent / "dashboard.py"
    if beside.is_file():
        return beside
    spec = importlib.util.find_spec("dashboard")
    if spec is None or spec.origin is None:
        raise SystemExit("live-training-dashboard: dashboard.py is not installed; reinstall the package")
    return Path(spec.origin)


def streamlit_command(argv: list[str] | None = None) -> tuple[list[str], dict]:
    """The command that serves the page and the environment it needs (tested without starting it)."""
    parser = argparse.ArgumentParser(prog="live-training-dashboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", help="where runs are kept: a folder or an fsspec URL (default: "
                                           "$DASHBOARD_RUNS_DIR, else ./runs)")
    parser.add_argument("--port", type=int, default=8501, help="the port to serve the page on (default 8501)")
    args, streamlit_options = parser.parse_known_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be between 1 and 65535, got {args.port}")
    env = dict(os.environ)
    if args.runs_dir is not None:
        if not args.runs_dir.strip():
            parser.error("--runs-dir cannot be empty; give a folder such as ./runs or a URL such as s3://bucket/runs")
        env["DASHBOARD_RUNS_DIR"] = args.runs_dir
    script = page_script()
    # In a checkout, charts update in place with plotly.js served from ./static beside the page
    # (dashboard.py copies it there); installed, nothing is written into site-packages and the
    # page falls back to st.plotly_chart. Streamlit's cache of large messages is off, as in
    # .streamlit/config.toml: it broke the page during a replay's frequent reruns ("Cached ForwardMsg MISS").
    in_place = ["--server.enableStaticServing", "true", "--global.minCachedMessageSize", "1e15"] if (
        script.parent / "pyproject.toml").is_file() else []
    # Streamlit's full gc.collect() after every script run took ~100 ms of each session's 1 s refresh
    # (see .streamlit/config.toml); Python's own collection still runs.
    command = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(args.port),
               "--runner.postScriptGC", "false", *in_place, *streamlit_options]
    return command, env


def main(argv: list[str] | None = None) -> None:
    command, env = streamlit_command(argv)
    os.execve(command[0], command, env)  # the server replaces this process: Ctrl+C stops it directly


if __name__ == "__main__":
    main()
