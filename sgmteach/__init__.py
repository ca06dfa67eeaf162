"""sgmteach: score-based generative models and mean-field-game flows, taught in JAX."""

from .losses import dsm_floor as dsm_floor
from .losses import dsm_loss as dsm_loss
from .losses import esm_loss as esm_loss
from .metrics import (
    Floor as Floor,
    distance_to_target as distance_to_target,
)
from .metrics import (
    mc_floor as mc_floor,
)
from .metrics import (
    mmd as mmd,
)
from .metrics import (
    sliced_wasserstein as sliced_wasserstein,
)
from .metrics import (
    wasserstein1 as wasserstein1,
)
from .mixture import (
    ExactScore as ExactScore,
)
from .mixture import (
    GaussianMixture as GaussianMixture,
)
from .mixture import (
    gaussian as gaussian,
)
from .mixture import (
    grid as grid,
)
from .mixture import (
    ring as ring,
)
from .mixture import (
    spiral as spiral,
)
from .mixture import (
    two_moons as two_moons,
)
from .nets import ScoreMLP as ScoreMLP
from .nets import TimeEmbedding as TimeEmbedding
from .nets import count_params as count_params
from .sample import sample as sample
from .sample import trajectories as trajectories
from .sde import VESDE as VESDE
from .sde import VPSDE as VPSDE
from .sde import AbstractSDE as AbstractSDE
from .sde import SubVPSDE as SubVPSDE
from .train import default_optimizer as default_optimizer
from .train import train as train

__version__ = "0.1.0"
