# expect: 2: A comparison
decay_lr = 5 > 3
