"""The workload: models, image sources, the predictor and its postprocess."""
