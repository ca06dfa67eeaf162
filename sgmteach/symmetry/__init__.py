"""Symmetry: finite groups, $S_G$, equivariant scores, rates under symmetry, invariant GANs.

Tutorials 03 and 04. Reached as `sg.symmetry.Name`, as `eqx.nn` is to Equinox:

- `groups.py`: `AbstractGroup` and the named groups; the averages `EquivariantScore`
  ($S_G$ of a field) and `InvariantFunction` ($S_G$ of a function);
- `symmetrize.py`: `symmetrize` on mixtures, sample sets, fields and functions; equivariance
  diagnostics; `symmetry_errors`; data augmentation (`RandomAction`);
- `rates.py`: the papers' rates in $n$, $|G|$ and $d$;
- `gan.py`: a Wasserstein GAN and its group-invariant version.

The group-invariant divergence estimators are the core's (`sg.w1_dual(..., group=g)`): they
take any of these groups.
"""

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
from .groups import SignFlips as SignFlips
from .rates import divergence_rate as divergence_rate
from .rates import invariant_gan_bound as invariant_gan_bound
from .rates import samples_needed as samples_needed
from .rates import symmetry_gain as symmetry_gain
from .rates import w1_rate as w1_rate
from .symmetrize import RandomAction as RandomAction
from .symmetrize import equivariance_error as equivariance_error
from .symmetrize import model_form_error as model_form_error
from .symmetrize import random_action as random_action
from .symmetrize import symmetrize as symmetrize
from .symmetrize import symmetry_errors as symmetry_errors
