"""Many runs at once: suites of entries and the self-test over the mutant catalog."""
