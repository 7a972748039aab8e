"""Ordinary training setups written for the tests: as a user has them, and ported with the kit."""
