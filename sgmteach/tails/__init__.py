"""Heavy-tailed targets and tail metrics (tutorial 09).

Reached as `sg.tails.Name`, for Chen, Gu, Katsoulakis, Rey-Bellet, Zhu, "Learning heavy-tailed
distributions with Wasserstein-proximal-regularized α-divergences" (2024; Information and
Inference, 2025):

- `targets.py`: `StudentT` (exact log-density, score, radial survival function, sampling),
  `HeavyTailSubmanifold` (heavy coordinates on a plane of a higher dimension, the paper's
  110-D construction) and `AUTHORS_EXPONENTS`;
- `metrics.py`: `radial_ccdf_l1` and `marginal_ccdf_l1` (the authors' L1 tail errors, computed
  as their notebooks do), `tail_log_error` (the follow-up paper's log-CCDF error);
- `finite.py`: `divergence_finite` and `Finiteness`, the conditions under which the plain and
  the Lipschitz-regularised divergences are finite.

The particle flow that learns these targets is `sg.particles.gpa` with
`divergence=("alpha", a)`; this package does not import it.
"""

from .finite import Finiteness as Finiteness
from .finite import divergence_finite as divergence_finite
from .metrics import marginal_ccdf_l1 as marginal_ccdf_l1
from .metrics import radial_ccdf_l1 as radial_ccdf_l1
from .metrics import tail_log_error as tail_log_error
from .targets import AUTHORS_EXPONENTS as AUTHORS_EXPONENTS
from .targets import HeavyTailSubmanifold as HeavyTailSubmanifold
from .targets import StudentT as StudentT
