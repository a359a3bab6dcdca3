"""Bad configuration: one clear line on stderr, exit code 2, nothing run and nothing written."""

from __future__ import annotations

import pytest

from bench.cli import main


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "b9"], "unknown model 'b9'"),
    (["--strategy", "magic"], "unknown strategy 'magic'"),
    (["--batch-size", "0"], "batch-size must be at least 1"),
    (["--source", "/no/such/folder"], "does not exist"),
    (["--device", "cuda"], "no CUDA device"),
    (["--weights", "/no/such/ckpt"], "no config.json"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, message):
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--model", "tiny", "--images", "2", "--results", str(tmp_path), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_unknown_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--no-such-option"])
    assert exit_info.value.code == 2


def test_models_command_lists_every_size(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["models"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(size in out for size in ("b0", "b1", "b2", "b3", "b4", "b5", "tiny"))
