# expect: 3: Cannot evaluate 1 / 0: division by zero
max_iters = 100
learning_rate = 1 / 0
