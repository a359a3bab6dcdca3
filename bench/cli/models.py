"""`segbench models`: the model sizes, with their parameters and GFLOPs."""

from __future__ import annotations

from bench.cli import app


@app.command()
def models() -> None:
    """List model sizes with parameters and GFLOPs at the native input size."""
    from rich.console import Console
    from rich.table import Table

    from bench.workload.models import SIZES, forward_gflops, parameter_count

    table = Table("size", "hidden sizes", "depths", "decoder", "input", "params (M)", "GFLOPs", "hub checkpoint")
    for name, size in SIZES.items():
        table.add_row(name, "/".join(map(str, size.hidden_sizes)), "/".join(map(str, size.depths)),
                      str(size.decoder_hidden_size),
                      f"{size.native_size}²", f"{parameter_count(name) / 1e6:.1f}", f"{forward_gflops(name):.1f}",
                      size.hub_id or "-")
    Console().print(table)
