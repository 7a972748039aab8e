"""The mutant catalog: the default spec, each with one real resume bug (see ``CAUGHT_BY``)."""
