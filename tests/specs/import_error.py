"""Test spec: fails at import time in the workers."""

import a_module_that_does_not_exist  # noqa: F401


class Unused:
    pass
