"""Hugging Face: GPT-2 and Llama weights in (the mapping, the hub), model folders and GGUF out."""
