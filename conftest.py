# Doctests under vanish/ run with the same strict settings as tests/.
from tests.conftest import *  # noqa: F401,F403
