"""Deciding what a run proved: trajectories, the resume point, the data ledger, tolerances."""
