"""Interactive explorers for the sgmteach tutorials (ipywidgets + plotly).

Every explorer follows the contract of `widgets.base.AbstractExplorer`: it builds with no
arguments, and has `sliders`, `fig` (one plotly `FigureWidget`), `status` and
`update(**values)`. `EXPLORERS` lists them all, for the tests and the benchmarks.
"""

from .base import MAX_DRAWN, AbstractExplorer, default_particles
from .bound import BoundExplorer
from .evolution import SampleEvolution
from .field import ScoreFieldExplorer
from .flows import ProximalFlowExplorer
from .nonlinear import ControlVariateExplorer, LangevinExplorer
from .particles import ParticleFlowExplorer, TailsExplorer
from .schedule import NoiseScheduleExplorer
from .symmetry import SymmetryExplorer

EXPLORERS = (
    NoiseScheduleExplorer,
    SampleEvolution,
    ScoreFieldExplorer,
    SymmetryExplorer,
    BoundExplorer,
    LangevinExplorer,
    ControlVariateExplorer,
    ProximalFlowExplorer,
    ParticleFlowExplorer,
    TailsExplorer,
)

__all__ = [
    "EXPLORERS",
    "AbstractExplorer",
    "MAX_DRAWN",
    "default_particles",
    "NoiseScheduleExplorer",
    "SampleEvolution",
    "ScoreFieldExplorer",
    "SymmetryExplorer",
    "BoundExplorer",
    "LangevinExplorer",
    "ControlVariateExplorer",
    "ProximalFlowExplorer",
    "ParticleFlowExplorer",
    "TailsExplorer",
]
