"""A task's CPU and memory use, sampled on its worker and written beside its log: its
worker's process, or the command it runs (with what that starts) while it runs one."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from pathlib import Path

from neuroferry.config import get_settings
from neuroferry.engine import UsageMeter, run_command, usage_key
from neuroferry.stores import open_store


def test_the_usage_lies_beside_the_log() -> None:
    assert usage_key("jobs/3/run/1/attempt-2.log") == "jobs/3/run/1/attempt-2.usage.json"


def test_a_meter_measures_its_worker_then_the_command_it_runs(tmp_path: Path) -> None:
    store = open_store("memory://")
    meter = UsageMeter(store, "jobs/1/run/0/attempt-1.usage.json", every=3600)
    meter.start()
    try:
        own = meter.sample()
        assert own["measured"] == "worker" and own["memory_bytes"] > 0
        assert own["cpu_percent"] >= 0 and own["elapsed_seconds"] >= 0

        # the command holds 64 MiB and starts a child: both are measured while it runs
        script = tmp_path / "hold.py"
        marker = tmp_path / "holding"
        release = tmp_path / "release"
        script.write_text(
            "import pathlib, subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
            "data = b'x' * (64 * 2**20)\n"
            f"pathlib.Path({str(marker)!r}).write_text('x')\n"
            f"while not pathlib.Path({str(release)!r}).exists():\n"
            "    time.sleep(0.01)\n"
            "child.kill()\n"
        )
        seen: dict[str, object] = {}

        def watch() -> None:
            while not marker.exists():
                threading.Event().wait(0.01)
            seen.update(meter.sample())
            release.write_text("go")

        watcher = threading.Thread(target=watch)
        watcher.start()
        log = logging.getLogger("test.usage")
        settings = get_settings(home=tmp_path / "home")
        env = {"PATH": os.path.dirname(sys.executable)}
        run_command([sys.executable, str(script)], settings=settings, log=log, env=env)
        watcher.join()
        assert seen["measured"] == "command"
        assert int(seen["memory_bytes"]) >= 64 * 2**20  # type: ignore[call-overload]
        assert meter.sample()["measured"] == "worker"  # the command has ended
    finally:
        meter.close()
    written = json.loads(store.get("jobs/1/run/0/attempt-1.usage.json"))
    assert written["measured"] == "worker" and written["memory_bytes"] > 0
