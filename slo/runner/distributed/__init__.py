"""Data-parallel runs: where each process stands, the collectives, FSDP, and the launcher."""
