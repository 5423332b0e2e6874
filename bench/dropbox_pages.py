"""Drop-box pages benchmark: the drop-boxes list and a group's page over a group folder
with many submissions, side by side with the files API's listing of the same folder.
Target: every page under 300 ms server time (the pages' budget, see ``bench/pages.py``).

    python bench/dropbox_pages.py                                  # 1,000 submissions
    python bench/dropbox_pages.py --submissions 100 --repeat 10    # a smoke run

It starts ``ferry serve --no-orchestrator`` (web only), publishes a drop-box on a local
folder with one group (``alice``), and fills the group's folder as the watcher leaves it:
``--submissions`` ended submissions of two datasets each (certificate, two status files,
two results, ``end.txt``: six files each), ``--inputs`` data files and ten configs. Then
it takes turns, as alice, between each page and the API request(s) returning its data:

* ``/dropboxes`` against ``GET /api/v2/dropboxes``;
* the group's page (its newest submission shown: listings of ``inputs/`` and
  ``configs/``, the folders of ``results/``, the newest submission's files, its
  certificate and two status files) against what a client of the API reads to show the
  same submission, ``GET …/files?prefix=results/`` (every file of every submission)
  plus ``GET …/files/{certificate}``;
* the part of that page its auto-refresh fetches (``?partial=1``), against the same.

Server time is until the whole answer was read, on loopback. Progress goes to stderr, the
table to stdout (``--json``: the results as JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from api import Service
from engine import say, summary
from neuroferry.auth import create_token, create_user
from neuroferry.db import make_engine

TARGET_MS = 300.0
WARMUP = 3
BOX, GROUP = "caiman-ncap-web", "lab1"


def fill(folder: Path, submissions: int, inputs: int) -> str:
    """The group's folder as the watcher leaves it; the newest submission's timestamp."""
    group = folder / GROUP
    for i in range(inputs):
        (group / "inputs" / f"data{i:05d}.h5").write_bytes(b"x" * 1024)
    for i in range(10):
        (group / "configs" / f"config{i}.yaml").write_text("bins: 4\n")
    stamp = ""
    for i in range(submissions):
        stamp = str(1_709_647_330 + i)
        job = group / "results" / f"job__{BOX}_{stamp}"
        (job / "logs").mkdir(parents=True)
        lines = [
            f"DATANAME: {GROUP}/inputs/data{d:05d}.h5 | STATUS: SUCCESS | TIME: "
            "2026_03_05_14_21_07 (finished) | LAST COMMAND: done"
            for d in (0, 1)
        ]
        (job / "logs/certificate.txt").write_text("\n".join(lines) + "\n" + "setup\n" * 30)
        for d in (0, 1):
            status = {"input": f"{GROUP}/inputs/data{d:05d}.h5", "status": "SUCCESS"}
            (job / f"logs/DATASET_NAME:data{d:05d}.h5_STATUS.txt").write_text(json.dumps(status))
            result = job / f"process_results/file-summary/r{d}.1"
            result.mkdir(parents=True)
            (result / "summary.json").write_text('{"files": 1}')
        (job / "process_results/end.txt").write_bytes(b"end of analysis marker")
    return stamp


def bench_case(
    client: httpx.Client,
    name: str,
    page: tuple[str, dict[str, Any]],
    api: list[tuple[str, dict[str, Any]]],
    check: Callable[[str], bool],
    repeat: int,
) -> dict[str, Any]:
    """``repeat`` rounds of the page and its API request(s), in alternating order."""
    page_ms: list[float] = []
    api_ms: list[float] = []
    size, same = 0, True

    def get_page() -> None:
        nonlocal size, same
        t0 = time.perf_counter()
        resp = client.get(page[0], params=page[1])
        page_ms.append((time.perf_counter() - t0) * 1000)
        if resp.status_code != 200:
            raise RuntimeError(f"GET {page[0]}: {resp.status_code} {resp.text[:300]}")
        size, same = len(resp.content), same and check(resp.text)

    def get_api() -> None:
        t0 = time.perf_counter()
        answers = [client.get(path, params=params) for path, params in api]
        api_ms.append((time.perf_counter() - t0) * 1000)
        for resp in answers:
            resp.raise_for_status()

    for _ in range(WARMUP):
        get_page()
        get_api()
    page_ms.clear()
    api_ms.clear()
    calls = [get_page, get_api]
    for i in range(repeat):
        for call in calls[i % 2 :] + calls[: i % 2]:
            call()
    out = {
        "name": name,
        "page_ms": summary(page_ms),
        "api_ms": summary(api_ms),
        "page_kib": round(size / 1024, 1),
        "page_shows_the_data": same,
    }
    say(
        f"  {name:24} page p50 {out['page_ms']['p50']:7.2f} p99 {out['page_ms']['p99']:7.2f}"
        f" | API p50 {out['api_ms']['p50']:7.2f} p99 {out['api_ms']['p99']:7.2f} ms"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submissions", type=int, default=1000, help="in the group's folder")
    parser.add_argument("--inputs", type=int, default=200, help="data files in inputs/")
    parser.add_argument("--repeat", type=int, default=50, help="rounds per page")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ferry-dropbox-pages-") as tmp:
        home = Path(tmp)
        folder = home / "box"
        folder.mkdir()
        with Service(home / "service", "", "--no-orchestrator") as service:
            engine = make_engine(f"sqlite:///{home / 'service' / 'ferry.db'}")
            token = create_token(engine, create_user(engine, "alice"), "bench")
            engine.dispose()
            admin = {"Authorization": f"Bearer {service.admin_token}"}
            with httpx.Client(base_url=service.url, headers=admin, timeout=60) as client:
                body = {"name": BOX, "analysis": "file-summary", "store": str(folder)}
                client.post("/api/v2/dropboxes", json=body).raise_for_status()
                group = {"name": GROUP, "members": ["alice"]}
                client.post(f"/api/v2/dropboxes/{BOX}/groups", json=group).raise_for_status()
            say(f"filling {args.submissions} submissions and {args.inputs} inputs")
            newest = fill(folder, args.submissions, args.inputs)
            files = f"/api/v2/dropboxes/{BOX}/files"
            certificate = f"{files}/results/job__{BOX}_{newest}/logs/certificate.txt"
            own = {"group": GROUP}
            page = f"/dropboxes/{BOX}"
            results = []
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=service.url, headers=headers, timeout=120) as client:
                results.append(
                    bench_case(
                        client,
                        "drop-boxes list",
                        ("/dropboxes", {}),
                        [("/api/v2/dropboxes", {})],
                        lambda text: f'data-dropbox="{BOX}"' in text,
                        args.repeat,
                    )
                )
                for name, params in (
                    ("group page", own),
                    ("group page, partial", {**own, "partial": "1"}),
                ):
                    results.append(
                        bench_case(
                            client,
                            name,
                            (page, params),
                            [(files, {**own, "prefix": "results/"}), (certificate, own)],
                            lambda text: (
                                f'data-timestamp="{newest}" data-state="ended"' in text
                                and text.count('data-status="SUCCESS"') == 2
                            ),
                            args.repeat,
                        )
                    )
    out = {"submissions": args.submissions, "inputs": args.inputs, "cases": results}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print("| page | page p50 | page p99 | API p50 | API p99 | KiB | shows the data | target |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        ok = "yes" if r["page_ms"]["p99"] < TARGET_MS else "NO"
        print(
            f"| {r['name']} | {r['page_ms']['p50']} | {r['page_ms']['p99']} | "
            f"{r['api_ms']['p50']} | {r['api_ms']['p99']} | {r['page_kib']} | "
            f"{'yes' if r['page_shows_the_data'] else 'NO'} | {ok} |"
        )
    if not all(r["page_shows_the_data"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
