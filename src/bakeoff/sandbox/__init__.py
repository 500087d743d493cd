"""A sandbox for model-written code: a contained child process with limits and an audit hook."""

from bakeoff.sandbox._run import Limits, SandboxResult, isolation_layers, run_python

__all__ = ["Limits", "SandboxResult", "isolation_layers", "run_python"]
