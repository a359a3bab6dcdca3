"""`python -m bench` is the `segbench` command."""

from bench.cli import main

main()
