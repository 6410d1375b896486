"""Benchmark suite for transfer learning of diffusion models."""

__version__ = "0.1.0"
