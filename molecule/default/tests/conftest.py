"""Collect every test_*.py here (swarm, fabric, mesh) against the molecule hosts."""
