"""Scaling backends: gunicorn and uvicorn workers on one machine, Kubernetes replicas.

Each lives in its own module so that optional dependencies stay optional;
this package only exports the Protocol and the error.
"""

from __future__ import annotations

from eventmon.scaling.backends._prefork import ScalingFailed
from eventmon.scaling.backends.base import ScalingBackend

__all__ = ["ScalingBackend", "ScalingFailed"]
