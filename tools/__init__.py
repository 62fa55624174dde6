"""Developer tooling: local stack launcher, benchmark, catalog feature extraction."""
