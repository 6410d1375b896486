"""Analyses of finished runs (they read a run's checkpoint; they never train). Each writes its own
result files under results/<task>@v<version>/<profile>/analysis/<analysis>/..., which reports read."""
