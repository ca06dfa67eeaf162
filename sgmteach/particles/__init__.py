"""Lipschitz-regularised particle flows: the generative particle algorithm (tutorial 08).

Reached as `sg.particles.Name`, from Gu, Birmpa, Pantazis, Rey-Bellet, Katsoulakis,
"Lipschitz-regularized gradient flows and generative particle algorithms for high-dimensional
scarce data" (SIAM J. Math. Data Sci.):

- `gpa.py`: `gpa` (particles moved down a Lipschitz discriminator, with the Fisher-information
  track and divergence detection), `GPARun`, `cfl_step` (the step from the speed limit),
  `translated_gaussian_distance` (the exact flow between translated Gaussians);
- `lipschitz.py`: `discriminator`, `project` (exact spectral or the authors' Frobenius
  projection), `layer_norms`, `lipschitz_bound`;
- `huber_kl`, the exact regularised KL between translated Gaussians, lives in the core
  (`sg.huber_kl`, shared with `sg.flows`) and is re-exported here.

Only the paper's abstracts and the authors' code could be read (notes
`shared/docs/papers/lipschitz-gradient-flows.md`, addendum B §3): the formulas marked derived
there are checked against exact answers in the tests.
"""

from ..divergences import huber_kl as huber_kl
from .gpa import GPARun as GPARun
from .gpa import cfl_step as cfl_step
from .gpa import gpa as gpa
from .gpa import translated_gaussian_distance as translated_gaussian_distance
from .lipschitz import discriminator as discriminator
from .lipschitz import layer_norms as layer_norms
from .lipschitz import lipschitz_bound as lipschitz_bound
from .lipschitz import project as project
