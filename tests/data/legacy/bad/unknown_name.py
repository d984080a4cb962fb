# expect: 4: Unknown name total_steps
max_iters = 100

lr_decay_iters = total_steps
