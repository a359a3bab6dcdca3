"""`segbench models`: the model sizes, with their parameters and GFLOPs."""

from __future__ import annotations

from bench.cli import app
from bench.cli.output import Json, print_json


def model_rows() -> list[dict]:
    """One row per size, raw numbers: what the table formats and `--json` prints."""
    from bench.workload.models import SIZES, forward_gflops, parameter_count

    return [{"size": name, "hidden_sizes": list(size.hidden_sizes), "depths": list(size.depths),
             "decoder_hidden_size": size.decoder_hidden_size, "native_size": size.native_size,
             "params": parameter_count(name), "gflops": forward_gflops(name), "hub_id": size.hub_id}
            for name, size in SIZES.items()]


@app.command()
def models(as_json: Json = False) -> None:
    """List model sizes with parameters and GFLOPs at the native input size."""
    from rich.console import Console
    from rich.table import Table

    rows = model_rows()
    if as_json:
        print_json(rows)
        return
    table = Table("size", "hidden sizes", "depths", "decoder", "input", "params (M)", "GFLOPs", "hub checkpoint")
    for row in rows:
        table.add_row(row["size"], "/".join(map(str, row["hidden_sizes"])), "/".join(map(str, row["depths"])),
                      str(row["decoder_hidden_size"]), f"{row['native_size']}²", f"{row['params'] / 1e6:.1f}",
                      f"{row['gflops']:.1f}", row["hub_id"] or "-")
    Console().print(table)
