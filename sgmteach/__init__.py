"""sgmteach: score-based generative models and mean-field-game flows, taught in JAX."""

from . import _xla

_xla.configure()  # before anything computes: see _xla.py (a hang of XLA's CPU runtime)

# ruff: noqa: E402

from .bounds import divergence_rate as divergence_rate
from .bounds import invariant_gan_bound as invariant_gan_bound
from .bounds import samples_needed as samples_needed
from .bounds import symmetry_gain as symmetry_gain
from .bounds import w1_rate as w1_rate
from .divergences import CriticEstimate as CriticEstimate
from .divergences import expected_mmd2 as expected_mmd2
from .divergences import f_alpha as f_alpha
from .divergences import f_alpha_conjugate as f_alpha_conjugate
from .divergences import lipschitz_alpha_divergence as lipschitz_alpha_divergence
from .divergences import mmd2 as mmd2
from .divergences import w1_dual as w1_dual
from .divergences import w1_exact as w1_exact
from .divergences import w1_radial as w1_radial
from .empirical import EmpiricalScore as EmpiricalScore
from .gan import AbstractGenerator as AbstractGenerator
from .gan import GANResult as GANResult
from .gan import Generator as Generator
from .gan import InvariantGenerator as InvariantGenerator
from .gan import train_gan as train_gan
from .groups import AbstractGroup as AbstractGroup
from .groups import CoordinateShifts as CoordinateShifts
from .groups import CyclicGroup as CyclicGroup
from .groups import DihedralGroup as DihedralGroup
from .groups import EquivariantScore as EquivariantScore
from .groups import InvariantFunction as InvariantFunction
from .groups import MatrixGroup as MatrixGroup
from .groups import RandomAction as RandomAction
from .groups import SignFlips as SignFlips
from .groups import equivariance_error as equivariance_error
from .groups import model_form_error as model_form_error
from .groups import random_action as random_action
from .groups import symmetrize as symmetrize
from .losses import dsm_floor as dsm_floor
from .losses import dsm_loss as dsm_loss
from .losses import esm_loss as esm_loss
from .metrics import Floor as Floor
from .metrics import distance_to_target as distance_to_target
from .metrics import mc_floor as mc_floor
from .metrics import mmd as mmd
from .metrics import sliced_wasserstein as sliced_wasserstein
from .metrics import wasserstein1 as wasserstein1
from .mixture import ExactScore as ExactScore
from .mixture import GaussianMixture as GaussianMixture
from .mixture import gaussian as gaussian
from .mixture import grid as grid
from .mixture import ring as ring
from .mixture import spiral as spiral
from .mixture import two_moons as two_moons
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
