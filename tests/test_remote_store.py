"""A runs folder on S3 (offline: moto's local S3 server): a script trains into it while the
page's catalog, in another process, sees the run live and then finished."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

from live_training_dashboard.run_catalog import RunCatalog  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def s3_endpoint(monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    import fsspec
    import s3fs

    # This process imported fsspec before the variable below existed: configure it directly.
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem(endpoint_url=endpoint).mkdir("runs-bucket")
    try:
        yield endpoint
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


def test_the_page_follows_a_run_a_script_writes_to_s3(s3_endpoint):
    url = "s3://runs-bucket/team/runs"
    # 30 epochs with a 0.3 s pause each: ~10 s of training, longer than the 5 s between the page's
    # listings of a remote runs folder (it found the run only after it ended with 12 epochs once).
    env = {**os.environ, **CREDENTIALS, "FSSPEC_S3_ENDPOINT_URL": s3_endpoint}
    script = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "watch_my_training.py"), "--runs-dir", url, "--epochs", "30",
         "--pause", "0.3", "--name", "on s3"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        catalog = RunCatalog(url, warm_up=False)
        seen_live = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            runs = catalog.runs()
            if runs:
                [run] = runs
                snapshot = run.snapshot()
                if run.is_active and snapshot is not None and snapshot.num_steps > 0 and seen_live is None:
                    seen_live = snapshot.num_steps  # the first data the page could draw, mid-run
                if not run.is_active:
                    break
            time.sleep(0.2)
        out, err = script.communicate(timeout=60)
    finally:
        if script.poll() is None:
            script.kill()
    assert script.returncode == 0, err[-2000:]
    assert seen_live is not None, "the catalog never saw the run while it trained"
    assert run.name == "on s3" and str(run.status) == "finished"
    final = run.snapshot()
    assert seen_live < final.num_steps == 30 * final.batches_per_epoch and len(final.epochs) == 30
