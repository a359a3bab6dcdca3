"""segbench: benchmark SegFormer batch-inference architectures on Ray."""

__version__ = "0.1.0"
