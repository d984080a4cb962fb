# expect: 2: too large a number
max_iters = 10 ** 10 ** 10
