# expect: 4: A loop
max_iters = 1

while max_iters < 100:
    max_iters *= 2
