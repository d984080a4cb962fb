"""Training data: datasets on disk, random batches, the built-in corpus, text tokenizers."""
