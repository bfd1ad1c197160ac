"""Many runs from one spec: a grid on a local worker pool or a Ray cluster, resumable.

``load_spec`` reads and checks a spec, ``SweepSpec.jobs`` expands its grid into named runs,
``run_sweep`` runs them on a pool (``LocalPool`` or ``RayPool``) and keeps ``sweep.json``.
"""
from .driver import SweepResult, run_sweep, select
from .executors import LocalPool, RayPool
from .spec import RunJob, SweepSpec, load_spec, spec_from_dict

__all__ = ["LocalPool", "RayPool", "RunJob", "SweepResult", "SweepSpec", "load_spec", "run_sweep", "select",
           "spec_from_dict"]
