"""Ray adapters around the pure core: Ray Data tables, Ray Train runs, Ray Tune sweeps."""
