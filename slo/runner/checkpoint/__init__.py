"""Checkpoints: the files and their safe loads, sharded folders, what a run keeps in them and
restores on resume, and where a run's first weights come from."""
