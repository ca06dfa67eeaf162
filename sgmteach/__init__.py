"""sgmteach: score-based generative models and mean-field-game flows, taught in JAX.

The core, in the order a learner meets it: forward SDEs, exact targets, score models, losses,
the training loop, samplers, metrics, the divergence estimators several topics share, and the
checks tutorials make of their claims. Topics are subpackages: `sg.symmetry` (tutorials 03-04),
`sg.nonlinear` (05), `sg.flows` (06-07), `sg.particles` (08) and `sg.tails` (09).
"""

from . import _xla

_xla.configure()  # before anything computes: see _xla.py (a hang of XLA's CPU runtime)

# ruff: noqa: E402

from .sde import AbstractSDE as AbstractSDE
from .sde import AbstractLinearSDE as AbstractLinearSDE
from .sde import AbstractBetaSDE as AbstractBetaSDE
from .sde import VPSDE as VPSDE
from .sde import SubVPSDE as SubVPSDE
from .sde import VESDE as VESDE
from .mixture import GaussianMixture as GaussianMixture
from .mixture import ExactScore as ExactScore
from .mixture import gaussian as gaussian
from .mixture import grid as grid
from .mixture import ring as ring
from .mixture import spiral as spiral
from .mixture import two_moons as two_moons
from .empirical import EmpiricalScore as EmpiricalScore
from .nets import ScoreMLP as ScoreMLP
from .nets import TimeEmbedding as TimeEmbedding
from .nets import count_params as count_params
from .losses import dsm_floor as dsm_floor
from .losses import dsm_loss as dsm_loss
from .losses import esm_loss as esm_loss
from .losses import explicit_score_error as explicit_score_error
from .train import default_optimizer as default_optimizer
from .train import train as train
from .sample import sample as sample
from .sample import trajectories as trajectories
from .metrics import Floor as Floor
from .metrics import distance_to_target as distance_to_target
from .metrics import mc_floor as mc_floor
from .metrics import mmd as mmd
from .metrics import sliced_wasserstein as sliced_wasserstein
from .metrics import wasserstein1 as wasserstein1
from .divergences import CriticEstimate as CriticEstimate
from .divergences import expected_mmd2 as expected_mmd2
from .divergences import f_alpha as f_alpha
from .divergences import f_alpha_conjugate as f_alpha_conjugate
from .divergences import huber_kl as huber_kl
from .divergences import lipschitz_alpha_divergence as lipschitz_alpha_divergence
from .divergences import lipschitz_kl_divergence as lipschitz_kl_divergence
from .divergences import mmd2 as mmd2
from .divergences import variational_objective as variational_objective
from .divergences import w1_dual as w1_dual
from .divergences import w1_exact as w1_exact
from .divergences import w1_radial as w1_radial
from .claims import ClaimError as ClaimError
from .claims import expect_above as expect_above
from .claims import expect_below as expect_below
from .claims import expect_close as expect_close
from .claims import expect_true as expect_true

from . import symmetry as symmetry
from . import nonlinear as nonlinear
from . import flows as flows
from . import particles as particles
from . import tails as tails

__version__ = "0.1.0"
