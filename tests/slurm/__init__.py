"""Support for the SLURM tests: the test cluster (cluster.sh), its profile overlay and helpers."""
