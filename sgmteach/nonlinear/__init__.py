"""Nonlinear drifts and control variates: nonlinear denoising score matching (tutorial 05).

Birrell, Katsoulakis, Rey-Bellet, Zhang, Zhu, "Nonlinear denoising score matching for enhanced
learning of structured distributions" (2024). Reached as `sg.nonlinear.Name`:

- `langevin.py`: `LangevinSDE` (a drift towards a fitted mixture), `ReferenceScore`,
  `fit_reference`,
  `euler_paths` and `euler_times` (the Euler chain NDSM trains on);
- `losses.py`: `ndsm_loss` with its control variates, `ndsm_constant`, `cv_objective`;
- `training.py`: `train_ndsm`, on the shared chunked loop;
- `pde.py`: `fokker_planck`, the exact density and score of any SDE on a 1-D or 2-D grid.

The paper's method section could not be read: the formulas are the reconstruction of
`shared/docs/papers/nonlinear-dsm.md` §2–4, checked against exact answers in the tests.
"""

from .langevin import LangevinSDE as LangevinSDE
from .langevin import ReferenceScore as ReferenceScore
from .langevin import euler_paths as euler_paths
from .langevin import euler_times as euler_times
from .langevin import fit_reference as fit_reference
from .losses import CONTROL_VARIATES as CONTROL_VARIATES
from .losses import NDSM_WEIGHTINGS as NDSM_WEIGHTINGS
from .losses import cv_objective as cv_objective
from .losses import euler_step as euler_step
from .losses import init_control_variate as init_control_variate
from .losses import ndsm_constant as ndsm_constant
from .losses import ndsm_loss as ndsm_loss
from .losses import ndsm_losses as ndsm_losses
from .pde import fokker_planck as fokker_planck
from .training import train_ndsm as train_ndsm
