"""The GPT model and its optimizers (AdamW, Muon beside AdamW) with the learning-rate schedules."""
