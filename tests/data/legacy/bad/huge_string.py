# expect: 2: too long a string
out_dir = 'x' * 10 ** 9
