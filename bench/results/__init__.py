"""What a run leaves: the record type, the store that writes and loads records, the environment they
describe, per-cell summaries and the baseline comparison."""
