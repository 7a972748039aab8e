"""Test spec: defines a class, but none derived from StopAndGoHarness."""


class NotAHarness:
    pass
