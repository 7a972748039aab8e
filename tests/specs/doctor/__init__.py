"""Small setups for ``tests/test_doctor.py``: the default spec with one resume hazard each."""
