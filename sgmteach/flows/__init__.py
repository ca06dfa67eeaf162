"""Mean-field-game flows: HJB residuals, HJB-regularised SGMs, W1+W2-proximal flows (06-07).

Reached as `sg.flows.Name`:

- `hjb.py`: `hjb_residual` and `hjb_terms` (the score-form HJB residual of any score model
  under any SDE), `HJBLoss` and `train_hjb` (score matching regularised by it), from Zhang,
  Katsoulakis, "A mean-field games laboratory for generative modeling" (2023);
- `proximal.py`: `translated_gaussian_flow` (the exact W1+W2 solution), `ProximalFlow` and
  `train_w1w2_flow` (a potential flow trained against a Lipschitz critic), from Gu,
  Katsoulakis, Rey-Bellet, Zhang, "Combining Wasserstein-1 and Wasserstein-2 proximals: robust
  manifold learning via well-posed generative flows" (2024).

Neither paper's method section could be read: the formulas are the reconstructions of
`shared/docs/papers/mfg-laboratory.md`, `w1w2-proximal-flows.md` and addendum A §2-3, checked
against exact answers in the tests.
"""

from .hjb import HJBLoss as HJBLoss
from .hjb import HJBTerms as HJBTerms
from .hjb import hjb_residual as hjb_residual
from .hjb import hjb_terms as hjb_terms
from .hjb import train_hjb as train_hjb
from .proximal import Potential as Potential
from .proximal import ProximalFlow as ProximalFlow
from .proximal import straightness as straightness
from .proximal import train_w1w2_flow as train_w1w2_flow
from .proximal import translated_gaussian_flow as translated_gaussian_flow
