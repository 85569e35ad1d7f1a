"""Test configuration shared by every test module.

x64 is switched on for the whole suite: the reference checks (TISEAN parity, statsmodels parity)
need float64, and the float32 paths are tested by passing float32 arrays explicitly.
"""

import jax

jax.config.update("jax_enable_x64", True)
