"""Ready-made stop-and-go specs: ``tiny_lightning`` (default) and known-broken ones."""
