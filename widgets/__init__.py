"""Interactive explorers for the sgmteach tutorials (ipywidgets + plotly).

Every explorer follows the contract of `widgets.base.Explorer`: it builds with no arguments,
and has `sliders`, `fig` (one plotly `FigureWidget`), `status` and `update(**values)`.
"""

from .base import Explorer as Explorer
from .base import default_particles as default_particles
from .bound import BoundExplorer as BoundExplorer
from .evolution import SampleEvolution as SampleEvolution
from .field import ScoreFieldExplorer as ScoreFieldExplorer
from .schedule import NoiseScheduleExplorer as NoiseScheduleExplorer
from .symmetry import SymmetryExplorer as SymmetryExplorer

__all__ = [
    "NoiseScheduleExplorer",
    "SampleEvolution",
    "ScoreFieldExplorer",
    "BoundExplorer",
    "SymmetryExplorer",
]
