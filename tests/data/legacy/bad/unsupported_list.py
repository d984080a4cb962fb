# expect: 2: A list
batch_size = [12, 24]
