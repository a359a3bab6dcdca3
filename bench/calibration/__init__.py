"""segbench measuring itself: the predictor against the bare forward pass, the harness overhead, and
every strategy's figures against an independent clock."""
