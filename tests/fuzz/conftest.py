"""Hypothesis profiles for the fuzz suite.

``ci`` (the default, run by ``make test``): a fixed number of examples per
property, derandomized so a run is reproducible and its time stable, no example
database written. ``fuzz`` (``make fuzz``): many more examples
(``FUZZ_EXAMPLES``, default 20000), random, with the example database so a
failure found once is replayed first next time. Choose with
``HYPOTHESIS_PROFILE``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

#: Examples per property in the short run (the whole fuzz suite stays well under 30 s).
CI_EXAMPLES = 100
#: Examples per property in ``make fuzz`` unless FUZZ_EXAMPLES says otherwise.
FUZZ_EXAMPLES = 20_000

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile(
    "ci", max_examples=int(os.environ.get("FUZZ_EXAMPLES", CI_EXAMPLES)), deadline=None,
    derandomize=True, database=None, suppress_health_check=_SLOW_OK,
)
settings.register_profile(
    "fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", FUZZ_EXAMPLES)), deadline=None,
    suppress_health_check=_SLOW_OK,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
