"""Entry point of the child process that runs one sweep cell: `python -m bench.cell_process`.

Arguments: the RunSpec as JSON, the record path, the sampling interval, and extra record fields as
JSON. Progress goes to stdout as `progress DONE TOTAL` lines, which the sweep reads off the pipe.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from bench.config import RunSpec
    from bench.runner import REFUSALS, run_cell

    spec_json, record_path, interval, extra = argv
    spec = RunSpec.from_dict(json.loads(spec_json))

    def progress(done: int, total: int | None) -> None:
        print(f"progress {done} {total if total is not None else -1}", flush=True)

    try:
        record, _ = run_cell(spec, sample_interval=float(interval), progress=progress,
                             record_path=Path(record_path), extra=json.loads(extra))
    except REFUSALS as err:
        print(f"refused: {err}", file=sys.stderr, flush=True)
        return 2
    return 0 if record["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
