"""Ingest benchmark: a uint16 TIFF stack to a 4-level sharded OME-Zarr with ``ferry ingest``,
against zarr-python and tensorstore writing the same pyramid directly, ``webknossos
convert``, and the raw limit (read + compress + write the same bytes, no pyramid).

    python bench/ingest.py                       # 4 GiB stack (2048 x 2048 x 512), 1 run each
    python bench/ingest.py --size 256MiB         # a quick run, 3 runs each
    python bench/ingest.py --tools raw,ferry     # some tools only

The stack (smooth structures, bright blobs and shot-like noise; fixed seed) is generated
once per shape and cached in the work dir, one uncompressed TIFF per z slice. Every tool
runs as its own process (neuroferry as a user runs it: ``ferry serve`` with its embedded
Dask cluster, then ``ferry ingest create CONFIG --wait``), with the same chunk and shard
shapes and the same codec (Blosc zstd level 5, byte shuffle) where it lets us choose, on a
page cache warmed with the source before every run (``--cold`` drops it instead). Outputs
are deleted between runs; each is read back once and compared with the source at every
level. Peak memory is the largest sum of RSS (and of PSS) over the tool's process tree,
sampled every 0.1 s. Results: a Markdown table on stdout, JSON in the work dir. Options:
``--help``.

While timing, nothing is contacted but 127.0.0.1 (the first run installs webknossos into
a virtual environment of its own with pip).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

import _ingest_peers as peers
from _ingest_peers import Plan
from api import Service
from sync import busy_cpu_seconds, git_commit, wait_for_quiet

HERE = Path(__file__).resolve().parent
PEERS = HERE / "_ingest_peers.py"
DEFAULT_WORK = HERE / ".data" / "ingest"
GiB, MiB = 2**30, 2**20
TOOLS = ("raw", "ferry", "ferry-l1", "zarr", "tensorstore", "webknossos")
LABELS = {
    "raw": "raw limit (no pyramid)",
    "ferry": "neuroferry",
    "ferry-l1": "neuroferry, 1 level",
    "zarr": "zarr-python direct",
    "tensorstore": "tensorstore direct",
    "webknossos": "webknossos convert",
}
FINAL = ("succeeded", "failed", "cancelled")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    """Bytes in ``4GiB``, ``256MiB``, ``1GB``, ``1000000``."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)(i?)B?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; e.g. 4GiB, 256MiB")
    number, prefix, binary = float(m[1]), m[2].upper(), m[3]
    power = "KMGT".index(prefix) + 1 if prefix else 0
    return int(number * (1024 if binary or not prefix else 1000) ** power)


def stack_shape(size: int) -> tuple[int, int, int]:
    """A stack of about ``size`` bytes of uint16: 2048 x 2048 slices from 1 GiB up,
    1024 x 1024 below, as many as fit (at least 8)."""
    side = 2048 if size >= GiB else 1024
    return (max(8, round(size / (side * side * 2))), side, side)


# -- process trees: memory and CPU -----------------------------------------------------------


class TreeSampler:
    """Peak of the summed RSS, and the CPU time, of some processes and their descendants,
    sampled in a thread."""

    def __init__(self, roots: Callable[[], list[int]], every: float = 0.1) -> None:
        self.roots, self.every = roots, every
        self.peak = self.peak_pss = 0
        self.cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _procs(self) -> list[psutil.Process]:
        found: dict[int, psutil.Process] = {}
        for pid in self.roots():
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                found[pid] = root
                for child in root.children(recursive=True):
                    found[child.pid] = child
        return list(found.values())

    def sample(self) -> int:
        total = shared = 0
        for proc in self._procs():
            with contextlib.suppress(psutil.Error), proc.oneshot():
                total += proc.memory_info().rss
                t = proc.cpu_times()
                self.cpu[proc.pid] = t.user + t.system
            shared += _pss(proc.pid)
        self.peak = max(self.peak, total)
        self.peak_pss = max(self.peak_pss, shared)
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def __enter__(self) -> TreeSampler:
        self.cpu0 = dict(self.cpu)
        self.sample()
        self.cpu0 = dict(self.cpu)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def cpu_seconds(self) -> float:
        return sum(v - self.cpu0.get(pid, 0.0) for pid, v in self.cpu.items())


def _pss(pid: int) -> int:
    """Proportional set size of a process in bytes (pages shared with other processes
    count in part), 0 when it cannot be read."""
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


# -- ferry serve ------------------------------------------------------------------------------


def ferry_env(home: Path, url: str = "") -> dict[str, str]:
    """The environment without this user's FERRY_*/AWS_* settings or proxies."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FERRY_", "AWS_")) and not k.lower().endswith("_proxy")
    }
    env.update(FERRY_HOME=str(home), NO_PROXY="127.0.0.1,localhost")
    if url:
        env["FERRY_URL"] = url
    return env


def ferry_command() -> list[str]:
    local = Path(sysconfig.get_path("scripts")) / "ferry"
    return [str(local)] if local.is_file() else [sys.executable, "-m", "neuroferry"]


def ferry_ingest_problem() -> str | None:
    """Why ``ferry ingest create`` cannot be run, or ``None`` when it can."""
    got = subprocess.run(
        [*ferry_command(), "ingest", "create", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if got.returncode != 0:
        return "the `ferry ingest create` command does not exist in this checkout"
    return None


def ingest_config(plan: Plan, src: Path, dest: Path, levels: int) -> dict[str, Any]:
    """An ingest configuration of the plan (the schema of ``ferry ingest create``)."""
    z, y, x = plan.shape
    vz, vy, vx = plan.voxel_size
    return {
        "version": 1,
        "name": f"bench/{plan.name}",
        "destination": dest.as_uri(),
        "source": {"plugin": "image-folder", "params": {"path": str(src), "pattern": plan.pattern}},
        "extent": {"x": [0, x], "y": [0, y], "z": [0, z]},
        "dtype": "uint16",
        "voxel_size": {"x": vx, "y": vy, "z": vz, "unit": plan.unit},
        "chunk": list(plan.chunk),
        "shard": list(plan.shard),
        "compression": {"codec": f"blosc-{plan.cname}", "level": plan.clevel},
        "levels": levels,
    }


def job_id_of(text: str) -> int | None:
    """The job id in the output of ``ferry ingest create``: its first line, or JSON."""
    first = text.strip().split("\n", 1)[0].strip()
    if first.isdigit():
        return int(first)
    with contextlib.suppress(ValueError):
        data = json.loads(text)
        if isinstance(data, list) and data:
            data = data[0]
        if isinstance(data, dict):
            for key in ("id", "job_id"):
                if isinstance(data.get(key), int):
                    return int(data[key])
            if isinstance(data.get("job"), dict) and isinstance(data["job"].get("id"), int):
                return int(data["job"]["id"])
    m = re.search(r"\bjob\s*#?\s*(\d+)", text, re.IGNORECASE) or re.search(r"\b(\d+)\b", text)
    return int(m[1]) if m else None


def task_seconds(tasks: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per task name of a job (``GET /api/v2/jobs/{id}/tasks``): how many instances ran,
    their summed run time (started to finished) and, for ``write`` tasks, the summed time
    their results say went into reading the source."""
    from datetime import datetime

    out: dict[str, dict[str, float]] = {}
    for task in tasks:
        if task.get("placement") == "map":
            continue  # the parent of a mapped task: its instances are counted
        try:
            start = datetime.fromisoformat(str(task["started"]))
            end = datetime.fromisoformat(str(task["finished"]))
        except (KeyError, ValueError, TypeError):
            continue
        entry = out.setdefault(str(task.get("name")), {"count": 0, "seconds": 0.0})
        entry["count"] += 1
        entry["seconds"] = round(entry["seconds"] + (end - start).total_seconds(), 3)
        result = task.get("result")
        if isinstance(result, dict) and isinstance(result.get("read_seconds"), int | float):
            entry["read_seconds"] = round(
                entry.get("read_seconds", 0.0) + result["read_seconds"], 3
            )
    return out


def job_seconds(status: dict[str, Any]) -> float | None:
    """The job's own run time from ``ferry ingest status --json``: started to finished."""
    from datetime import datetime

    job = status.get("job", status)
    for key in ("seconds", "elapsed", "duration", "duration_s"):
        if isinstance(job.get(key), int | float):
            return float(job[key])
    try:
        start = datetime.fromisoformat(str(job["started"]))
        end = datetime.fromisoformat(str(job["finished"]))
    except (KeyError, ValueError, TypeError):
        return None
    return (end - start).total_seconds()


# -- the benchmark ----------------------------------------------------------------------------


@dataclass
class Row:
    tool: str
    levels: int
    command: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    job_seconds: list[float] = field(default_factory=list)
    write_seconds: list[float] = field(default_factory=list)
    """Per neuroferry run: first write task started to the job finished (its status)."""
    tasks: list[dict[str, dict[str, float]]] = field(default_factory=list)
    """Per run of a neuroferry job: its tasks' count and summed seconds by name."""
    peak_rss_mib: list[float] = field(default_factory=list)
    peak_pss_mib: list[float] = field(default_factory=list)
    idle_rss_mib: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    other_cpu_seconds: list[float] = field(default_factory=list)
    load_before: list[float] = field(default_factory=list)
    output_bytes: int = 0
    check: str = ""
    check_detail: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds and not self.error else None


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work: Path = args.work.resolve()
        shape = tuple(args.shape) if args.shape else stack_shape(args.size)
        self.plan = Plan(shape=shape, levels=args.levels, factors=tuple(args.factors))
        self.repeats: int = args.repeats or (1 if self.plan.nbytes >= GiB else 3)
        self.src = self.work / "src-{}x{}x{}".format(*self.plan.shape)
        self.out = self.work / "out"
        self.cold = False
        self.cache_note = "warm: the source read once (to /dev/null) before every run"
        if args.cold:
            self.cold, self.cache_note = can_drop_caches()
        self.rows = {
            t: Row(t, 1 if t in ("raw", "ferry-l1") else self.plan.levels) for t in args.tools
        }
        self.versions: dict[str, str] = {}
        self.timeout: float = args.timeout

    # data ------------------------------------------------------------------------------------

    def ensure_data(self) -> None:
        spec = {
            "shape": list(self.plan.shape),
            "seed": peers.SEED,
            "pattern": self.plan.pattern,
            "version": 1,
        }
        spec_file = self.src / "spec.json"
        with contextlib.suppress(OSError, ValueError):
            if json.loads(spec_file.read_text()) == spec:
                return
        say(
            f"generating the stack {self.plan.shape} ({self.plan.nbytes / MiB:,.0f} MiB) "
            f"in {self.src} ..."
        )
        shutil.rmtree(self.src, ignore_errors=True)
        peers.generate(self.plan, self.src, say)
        spec_file.write_text(json.dumps(spec))

    def settle(self) -> float:
        """Before a timed run: flush earlier writes, warm or drop the page cache, wait for
        quiet; the load that remained."""
        os.sync()
        if self.cold:
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
        else:
            for z in range(self.plan.shape[0]):
                with open(peers.slice_path(self.src, self.plan, z), "rb") as f:
                    while f.read(16 * MiB):
                        pass
        return round(wait_for_quiet(self.args.quiet_wait), 2)

    # running ---------------------------------------------------------------------------------

    def timed(
        self,
        row: Row,
        cmd: list[str],
        env: dict[str, str] | None = None,
        also: Callable[[], list[int]] = list,
    ) -> subprocess.CompletedProcess[str] | None:
        """Run a command to its end, timed, its process tree (and ``also``'s) sampled."""
        row.load_before.append(self.settle())
        box: dict[str, int] = {}
        sampler = TreeSampler(lambda: [*([box["pid"]] if "pid" in box else []), *also()])
        busy0 = busy_cpu_seconds()
        with sampler:
            idle = sampler.sample()
            started = time.perf_counter()
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                start_new_session=True,
            )
            box["pid"] = proc.pid
            try:
                stdout, stderr = proc.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                row.error = f"timed out after {self.timeout:.0f} s"
                return None
            seconds = time.perf_counter() - started
        busy = busy_cpu_seconds() - busy0
        if proc.returncode != 0:
            row.error = f"exit {proc.returncode}: {(stderr or stdout).strip()[-800:]}"
            return None
        row.seconds.append(round(seconds, 3))
        row.peak_rss_mib.append(round(sampler.peak / MiB))
        row.peak_pss_mib.append(round(sampler.peak_pss / MiB))
        row.idle_rss_mib.append(round(idle / MiB))
        row.cpu_seconds.append(round(sampler.cpu_seconds, 2))
        row.other_cpu_seconds.append(round(max(busy - sampler.cpu_seconds, 0.0), 2))
        return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)

    def run_peer(self, tool: str, run: int) -> None:
        row = self.rows[tool]
        dest = self.out / tool / f"{self.plan.name}.ome.zarr"
        shutil.rmtree(self.out / tool, ignore_errors=True)
        plan_file = self.work / "plan.json"
        plan_file.write_text(self.plan.to_json())
        row.command = [sys.executable, str(PEERS), tool, str(plan_file), str(self.src), str(dest)]
        done = self.timed(row, row.command)
        if done is not None and run == 0:
            self.check(row, dest, peers.open_ome_zarr, levels=row.levels)

    def run_webknossos(self, run: int) -> None:
        row = self.rows["webknossos"]
        exe, why = find_webknossos(self.args.webknossos_venv or self.work / "venv-webknossos")
        if exe is None:
            row.error = f"not installed: {why}"
            return
        self.versions["webknossos"] = _version([exe, "--version"])
        dest = self.out / "webknossos" / self.plan.name
        shutil.rmtree(self.out / "webknossos", ignore_errors=True)
        z, y, x = self.plan.voxel_size
        fz, fy, fx = (f ** (self.plan.levels - 1) for f in self.plan.factors)
        if self.plan.factors == (2, 2, 2):
            sampling = "isotropic"
        elif self.plan.factors == (1, 2, 2):
            sampling = "constant_z"
        else:
            row.error = f"no webknossos sampling mode for factors {self.plan.factors}"
            return
        cz, cy, cx = self.plan.chunk
        sz, sy, sx = self.plan.shard
        row.command = [
            exe,
            "convert",
            str(self.src),
            str(dest),
            "--voxel-size",
            f"{x},{y},{z}",
            "--unit",
            self.plan.unit,
            "--layer-name",
            "color",
            "--category",
            "color",
            "--data-format",
            "zarr3",
            "--chunk-shape",
            f"{cx},{cy},{cz}",
            "--shard-shape",
            f"{sx},{sy},{sz}",
            "--max-mag",
            f"{fx}-{fy}-{fz}",
            "--sampling-mode",
            sampling,
            "--jobs",
            str(self.plan.workers),
        ]
        row.note = (
            "its zarr3 codec is fixed: zstd level 5 with a checksum, no shuffle (not Blosc); "
            "downsampling by median (its default for color layers)"
        )
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env.pop("WK_TOKEN", None)
        done = self.timed(row, row.command, env=env)
        if done is not None and run == 0:
            self.check(row, dest, peers.open_webknossos, levels=self.plan.levels)

    def run_ferry(self, service: Service, tool: str, run: int) -> None:
        row = self.rows[tool]
        dest = self.out / tool
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        config = self.work / f"ingest-{tool}.json"
        config.write_text(
            json.dumps(ingest_config(self.plan, self.src, dest, row.levels), indent=2)
        )
        row.command = [*ferry_command(), "ingest", "create", str(config), "--wait"]
        env = ferry_env(service.home, service.url)
        assert service.proc is not None
        pid = service.proc.pid
        done = self.timed(row, row.command, env=env, also=lambda: [pid])
        if done is None:
            return
        job_id = job_id_of(done.stdout)
        if job_id is not None:
            got = subprocess.run(
                [*ferry_command(), "ingest", "status", str(job_id), "--json"],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
                check=False,
            )
            with contextlib.suppress(ValueError):
                status = json.loads(got.stdout)
                if (secs := job_seconds(status)) is not None:
                    row.job_seconds.append(round(secs, 3))
                row.write_seconds.append(status.get("seconds") or 0.0)
            with contextlib.suppress(httpx.HTTPError, ValueError, OSError):
                token = json.loads((service.home / "token.json").read_text())["token"]
                got_tasks = httpx.get(
                    f"{service.url}/api/v2/jobs/{job_id}/tasks",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=60,
                )
                row.tasks.append(task_seconds(got_tasks.json()))
                state = status.get("state") or status.get("job", {}).get("state")
                if state and state != "succeeded":
                    row.error = f"job {job_id} ended {state}"
        if run == 0:
            self.check(
                row,
                dest / f"bench/{self.plan.name}.ome.zarr",
                peers.open_ome_zarr,
                levels=row.levels,
            )

    def warm_up_ferry(self, service: Service) -> None:
        """One small ingest job, so the Dask workers have imported what ingest needs."""
        small = Plan(shape=(8, 256, 256), levels=2, factors=self.plan.factors)
        src = self.work / "src-warm-up"
        if not (src / "spec.json").exists():
            peers.generate(small, src, say)
            (src / "spec.json").write_text("{}")
        dest = self.out / "warm-up"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        config = self.work / "ingest-warm-up.json"
        config.write_text(json.dumps(ingest_config(small, src, dest, 2)))
        got = subprocess.run(
            [*ferry_command(), "ingest", "create", str(config), "--wait"],
            capture_output=True,
            text=True,
            env=ferry_env(service.home, service.url),
            timeout=600,
            check=False,
        )
        if got.returncode != 0:
            say(f"warm-up job failed (exit {got.returncode}): {(got.stderr or got.stdout)[-800:]}")
        shutil.rmtree(dest, ignore_errors=True)

    def check(
        self, row: Row, path: Path, opener: Callable[[Path], list[peers.Level]], levels: int
    ) -> None:
        row.output_bytes = peers.disk_bytes(path.parent if row.tool == "webknossos" else path)
        try:
            plan = Plan(shape=self.plan.shape, levels=levels, factors=self.plan.factors)
            result = peers.check_output(opener(path), plan, self.src)
        except Exception as exc:  # a broken output is a finding, not a crash
            row.check = f"unreadable: {type(exc).__name__}: {exc}"
            return
        row.check, row.check_detail = result.pop("check"), result

    def run(self) -> dict[str, Any]:
        self.ensure_data()
        self.versions.update(versions())
        ferry_tools = [t for t in self.rows if t.startswith("ferry")]
        ferry_problem = ferry_ingest_problem() if ferry_tools else None
        for t in ferry_tools:
            if ferry_problem:
                self.rows[t].error = f"not run: {ferry_problem}"
        for run in range(self.repeats):
            for tool in self.rows:
                if tool.startswith("ferry"):
                    continue  # all neuroferry runs share one service, below
                if self.rows[tool].error:
                    continue
                say(f"[{run + 1}/{self.repeats}] {LABELS[tool]} ...")
                if tool == "webknossos":
                    self.run_webknossos(run)
                else:
                    self.run_peer(tool, run)
                self.report_one(tool)
            runnable = [t for t in ferry_tools if not self.rows[t].error]
            if runnable:
                home = self.work / "ferry-home"
                shutil.rmtree(home, ignore_errors=True)
                say(f"[{run + 1}/{self.repeats}] starting ferry serve ...")
                env = {**ferry_env(home), **self.args.ferry_env}
                with Service(home, "", env=env) as service:
                    self.warm_up_ferry(service)
                    for tool in runnable:
                        say(f"[{run + 1}/{self.repeats}] {LABELS[tool]} ...")
                        self.run_ferry(service, tool, run)
                        self.report_one(tool)
            if not self.args.keep:
                for tool in self.rows:
                    shutil.rmtree(self.out / tool, ignore_errors=True)
        if not self.args.keep:
            shutil.rmtree(self.out, ignore_errors=True)
        return self.results()

    def report_one(self, tool: str) -> None:
        row = self.rows[tool]
        if row.error:
            say(f"  {row.error}")
        elif row.seconds:
            s = row.seconds[-1]
            say(
                f"  {s:.1f} s, {self.plan.nbytes / s / 1e6:.0f} MB/s, peak RSS "
                f"{row.peak_rss_mib[-1]:,.0f} MiB" + (f", check: {row.check}" if row.check else "")
            )

    def results(self) -> dict[str, Any]:
        return {
            "plan": json.loads(self.plan.to_json()),
            "source_bytes": self.plan.nbytes,
            "repeats": self.repeats,
            "cache": self.cache_note,
            "ferry_env": self.args.ferry_env,
            "machine": machine(),
            "versions": self.versions,
            "rows": {t: r.__dict__ for t, r in self.rows.items()},
        }


def can_drop_caches() -> tuple[bool, str]:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:
        return False, f"warm (the page cache could not be dropped: {exc.strerror or exc})"
    return (
        True,
        "cold: page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every run",
    )


def find_webknossos(venv: Path) -> tuple[str | None, str]:
    """The ``webknossos`` command of its own virtual environment, created on first use
    (webknossos pins versions the project's environment cannot take)."""
    exe = venv / "bin" / "webknossos"
    if exe.exists():
        return str(exe), ""
    say(f"installing webknossos[tifffile] into {venv} ...")
    log = venv.parent / "webknossos-install.log"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        with log.open("w") as out:
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "--quiet", "webknossos[tifffile]"],
                check=True,
                timeout=1800,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"pip install webknossos failed ({exc}); see {log}"
    return (str(exe), "") if exe.exists() else (None, "the install left no webknossos command")


def _version(cmd: list[str]) -> str:
    try:
        got = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except OSError as exc:
        return f"unknown ({exc})"
    lines = [
        ln for ln in (got.stdout or got.stderr).splitlines() if ln.strip() and "Warning" not in ln
    ]
    return lines[-1].strip() if lines else "unknown"


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version(), "neuroferry_commit": git_commit()}
    for name in (
        "neuroferry",
        "zarr",
        "tensorstore",
        "numcodecs",
        "tifffile",
        "numpy",
        "distributed",
    ):
        with contextlib.suppress(Exception):
            out[name] = version(name)
    return out


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(psutil.virtual_memory().total / GiB, 1),
        "kernel": platform.release(),
    }


# -- report ------------------------------------------------------------------------------------


def _f(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def report(results: dict[str, Any]) -> str:
    nbytes = results["source_bytes"]
    rows = results["rows"]

    def mbps(tool: str) -> float | None:
        r = rows.get(tool)
        if not r or r["error"] or not r["seconds"]:
            return None
        return float(nbytes / statistics.median(r["seconds"]) / 1e6)

    raw, ferry = mbps("raw"), mbps("ferry")
    raw_cpu = (
        statistics.median(rows["raw"]["cpu_seconds"])
        if "raw" in rows and rows["raw"]["cpu_seconds"]
        else None
    )
    plan = results["plan"]
    lines = [
        f"{plan['shape'][0]} x {plan['shape'][1]} x {plan['shape'][2]} uint16 slices "
        f"({nbytes / MiB:,.0f} MiB) -> {plan['levels']} levels, chunk {plan['chunk']}, shard "
        f"{plan['shard']}, blosc {plan['cname']} {plan['clevel']} {plan['shuffle']}, "
        f"downsampling x{plan['factors']} per level; {results['repeats']} run(s) per tool, "
        f"median; cache {results['cache']}.",
        "MB/s = source bytes / 1e6 / seconds. x raw = MB/s / raw limit's MB/s. "
        "ferry / tool = neuroferry's MB/s / the tool's (> 1: neuroferry faster). "
        "CPU x raw = the raw limit's CPU s / the tool's (the work it did, less sensitive to "
        "other work on the machine than the wall time).",
        "",
        "| tool | levels | seconds | range | MB/s | x raw | ferry / tool | job s | peak RSS MiB "
        "| peak PSS MiB | tool CPU s | CPU x raw | other CPU s | output MB | check |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for tool, r in rows.items():
        label = LABELS.get(tool, tool)
        if r["error"] or not r["seconds"]:
            lines.append(
                f"| {label} | {r['levels']} |" + " - |" * 12 + f" {r['error'] or 'no run'} |"
            )
            continue
        secs = r["seconds"]
        speed = mbps(tool)
        assert speed is not None
        vs = "-" if tool == "ferry" or ferry is None else _f(ferry / speed)
        rng = f"{min(secs):.1f}-{max(secs):.1f}" if len(secs) > 1 else "-"
        job = _f(statistics.median(r["job_seconds"]), "{:.1f}") if r["job_seconds"] else "-"
        lines.append(
            f"| {label} | {r['levels']} | {statistics.median(secs):.1f} | {rng} | {speed:,.0f} "
            f"| {_f(speed / raw if raw else None)} | {vs} | {job} | {max(r['peak_rss_mib']):,.0f} "
            f"| {max(r['peak_pss_mib']):,.0f} "
            f"| {statistics.median(r['cpu_seconds']):.1f} "
            f"| {_f(raw_cpu / statistics.median(r['cpu_seconds']) if raw_cpu else None)} "
            f"| {statistics.median(r['other_cpu_seconds']):.1f} "
            f"| {r['output_bytes'] / 1e6:,.0f} | {r['check'] or '-'} |"
        )
    notes = [f"{LABELS.get(t, t)}: {r['note']}" for t, r in rows.items() if r.get("note")]
    for t, r in rows.items():
        if t.startswith("ferry") and r["idle_rss_mib"]:
            notes.append(
                f"{LABELS[t]}: peak RSS is the service, its Dask workers and the CLI together; "
                f"{min(r['idle_rss_mib']):,} MiB of it before the job was submitted"
            )
    for t, r in rows.items():
        if t.startswith("ferry") and r["tasks"] and r["tasks"][0]:
            parts = [
                f"{name} x{v['count']:.0f}: {v['seconds']:.1f} s"
                + (f" ({v['read_seconds']:.1f} s reading)" if "read_seconds" in v else "")
                for name, v in r["tasks"][0].items()
            ]
            notes.append(f"{LABELS[t]}, its tasks' summed run time: " + ", ".join(parts))
    if notes:
        lines += ["", *notes]
    if results.get("ferry_env"):
        lines += ["", f"ferry serve ran with {results['ferry_env']}"]
    v = results["versions"]
    lines += ["", "versions: " + ", ".join(f"{k} {val}" for k, val in v.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=4 * GiB, help="stack bytes (4GiB)")
    parser.add_argument(
        "--shape", type=lambda s: [int(v) for v in s.split(",")], help="Z,Y,X instead of --size"
    )
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="data and outputs")
    parser.add_argument("--repeats", type=int, help="runs per tool (1 from 1 GiB up, else 3)")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"some of {','.join(TOOLS)}")
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument(
        "--factors",
        type=lambda s: [int(v) for v in s.split(",")],
        default=[2, 2, 2],
        help="downsampling per level as Z,Y,X (2,2,2 or 1,2,2)",
    )
    parser.add_argument("--cold", action="store_true", help="drop the page cache before runs")
    parser.add_argument(
        "--quiet-wait", type=float, default=30, help="wait up to S s for other work to calm down"
    )
    parser.add_argument("--timeout", type=float, default=3600, help="s one run may take")
    parser.add_argument("--webknossos-venv", type=Path, help="its own virtual environment")
    parser.add_argument(
        "--ferry-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable for ferry serve (and so its Dask workers); repeatable",
    )
    parser.add_argument("--keep", action="store_true", help="keep the last outputs")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--out", type=Path, help="results JSON (default: in the work dir)")
    parser.add_argument(
        "--report", type=Path, help="print the table of a results JSON; run nothing"
    )
    args = parser.parse_args(argv)
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return 0
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if unknown := set(args.tools) - set(TOOLS):
        parser.error(f"unknown tool {', '.join(sorted(unknown))}; use {', '.join(TOOLS)}")
    if args.shape and len(args.shape) != 3:
        parser.error("--shape takes Z,Y,X")
    if len(args.factors) != 3 or set(args.factors) - {1, 2}:
        parser.error("--factors takes Z,Y,X, each 1 or 2")
    args.tools = [t for t in TOOLS if t in args.tools]
    if bad := [e for e in args.ferry_env if "=" not in e]:
        parser.error(f"--ferry-env takes KEY=VALUE, not {bad[0]!r}")
    args.ferry_env = dict(e.split("=", 1) for e in args.ferry_env)

    bench = Bench(args)
    started = time.perf_counter()
    results = bench.run()
    results["seconds"] = round(time.perf_counter() - started)
    out = args.out or bench.work / "results-{}x{}x{}.json".format(*bench.plan.shape)
    out.write_text(json.dumps(results, indent=2, default=str))
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        print(report(results))
        print(f"\nresults: {out} ({results['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
