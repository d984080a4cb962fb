"""``slo prepare``: input files read in pieces, encoded on every core, written as a dataset."""
