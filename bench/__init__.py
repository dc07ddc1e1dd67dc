"""Benchmarks (`make bench`): results go to docs/BENCHMARKS.md with the machine and command."""
