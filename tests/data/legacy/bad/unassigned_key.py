# expect: 2: max_iters is not assigned earlier in this file
lr_decay_iters = max_iters
