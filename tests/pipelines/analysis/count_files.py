"""A command analysis of the tests: lists the files under its input folder, and writes
their count and total size (times the ``scale`` parameter) to ``outputs.json``.

Usage: count_files.py INPUT_SOURCE OUTPUT_LOCATION JOB_SETTINGS [MARK]"""

import json
import sys
from pathlib import Path

inputs, output, settings = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
files = [p for p in sorted(inputs.rglob("*")) if p.is_file() and ".ferry" not in p.parts]
listing = [p.relative_to(inputs).as_posix() for p in files] + sys.argv[4:]
(output / "listing.txt").write_text("\n".join(listing) + "\n")
total = sum(p.stat().st_size for p in files) * settings["scale"]
(output / "outputs.json").write_text(json.dumps({"files": len(files), "bytes": total}))
