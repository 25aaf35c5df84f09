"""pydensecrf's API on emseg's operators: change the package prefix and nothing else.

::

    # import pydensecrf.densecrf as dcrf
    # from pydensecrf.utils import unary_from_softmax
    import emseg.pydensecrf.densecrf as dcrf
    from emseg.pydensecrf.utils import unary_from_softmax

:mod:`.densecrf` holds ``DenseCRF`` / ``DenseCRF2D`` (any number of pairwise terms over features of
1 to 16 dimensions, every kernel type, normalisation and label compatibility pydensecrf defines,
step-by-step inference and the KL divergence), :mod:`.utils` the helpers that build unaries and
features. ``device=`` (an extension) runs the inference on a CUDA device. :mod:`emseg.crf` remains
the batched, torch-native API.
"""

from . import densecrf, utils

__all__ = ["densecrf", "utils"]
