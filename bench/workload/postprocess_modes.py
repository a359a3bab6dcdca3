"""The postprocess modes a cell may ask for (bench.workload.postprocess runs them). Apart from it so that
the settings are checked without importing torch."""

EXACT, APPROX, REFERENCE = "exact", "approx", "reference"
POSTPROCESS_MODES = (EXACT, APPROX, REFERENCE)
