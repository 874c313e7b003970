"""Where an agent runs actions: local processes (default, and what tests use) or Kubernetes pods."""

from ._process import ProcessBackend, ProcessHandle
from ._protocol import Backend, Capacity, Exit, ExitKind, Handle, LaunchSpec, OutputSink

__all__ = [
    "Backend",
    "Capacity",
    "Exit",
    "ExitKind",
    "Handle",
    "LaunchSpec",
    "OutputSink",
    "ProcessBackend",
    "ProcessHandle",
]
