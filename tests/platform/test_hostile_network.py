"""Ray on the host network without authentication: where no private network namespace can be made, Ray
listens on every interface, and with RAY_AUTH_MODE=disabled anyone who reaches the machine can run code
in it. The CLI refuses that (exit 2, one line) unless told --allow-open-cluster, and names the mode Ray
itself reports. The environment is simulated: no Ray is started."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.cli import ALLOW_OPEN_ENV, isolate_local_ray, main
from bench.platform import netns

NO_NAMESPACE = "a network namespace needs CAP_SYS_ADMIN: unshare failed with Operation not permitted"


@pytest.fixture
def host_network(monkeypatch):
    """No private namespace can be made, and Ray would run without authentication."""
    monkeypatch.setattr(netns, "private_network", lambda: NO_NAMESPACE)
    monkeypatch.setattr(netns, "loopback_only", lambda: False)
    monkeypatch.setattr(netns, "local_auth_mode", lambda: "disabled")
    monkeypatch.setenv(ALLOW_OPEN_ENV, "")  # restored after the test, whatever a command set
    monkeypatch.delenv(ALLOW_OPEN_ENV)


def test_the_mode_is_what_ray_reports_not_the_variable_repeated():
    """In a fresh process (Ray caches its config): unset is set to Ray's default for a new local cluster,
    token, and read back from Ray's config; a value Ray does not know is no authentication at all, whatever
    the variable says."""
    code = ("import os\nfrom bench.platform.netns import local_auth_mode\n"
            "for value in [None, 'disabled', 'DISABLED', 'token', 'Token', 'tokens']:\n"
            "    os.environ.pop('RAY_AUTH_MODE', None)\n"
            "    if value is not None:\n"
            "        os.environ['RAY_AUTH_MODE'] = value\n"
            "    print(local_auth_mode(), os.environ['RAY_AUTH_MODE'] if value is None else '')\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["token", "token", "disabled", "disabled", "token", "token", "disabled"], out.stderr


@pytest.mark.parametrize("command", [
    ["run", "--strategy", "actors", "--model", "tiny", "--images", "2"],
    ["sweep", "--preset", "quick", "--quiet"],
])
def test_an_open_cluster_on_the_host_network_is_refused_with_one_line(host_network, command, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--results", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("segbench: error:")
    assert "'disabled'" in err and "--allow-open-cluster" in err and "CAP_SYS_ADMIN" in err
    assert not list(tmp_path.iterdir())  # nothing ran


def test_allowed_it_runs_and_says_the_mode_ray_reports(host_network, capsys):
    isolate_local_ray(["actors"], None, "random", "synthetic", allow_open=True)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "stays on the host network" in line and "authentication: disabled" in line and "OPEN" in line


def test_the_flag_may_come_from_the_environment_as_the_ab_sides_get_it(host_network, monkeypatch, tmp_path):
    monkeypatch.setenv(ALLOW_OPEN_ENV, "1")
    monkeypatch.setattr("bench.cli.sweep.run_with_progress", lambda *a, **k: 0)  # past the check: run nothing
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--preset", "quick", "--results", str(tmp_path)])
    assert exit_info.value.code == 0


@pytest.mark.parametrize(("names", "address", "mode"), [
    (["sequential"], None, "disabled"),  # no Ray at all
    (["actors"], "ray://elsewhere:10001", "disabled"),  # a cluster someone else runs and guards
    (["actors"], None, "token"),  # guarded by its tokens: a note, no refusal
])
def test_nothing_is_refused_where_no_open_local_cluster_starts(host_network, monkeypatch, names, address, mode):
    monkeypatch.setattr(netns, "local_auth_mode", lambda: mode)
    isolate_local_ray(names, address, "random", "synthetic")


def test_hub_weights_keep_the_host_network_and_are_refused_open_too(host_network):
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match="needs the internet"):
        isolate_local_ray(["actors"], None, "hub", "synthetic")
