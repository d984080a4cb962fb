"""A run's folder (out_dir): the names of its files, their readers, and the lock of a run training there."""
