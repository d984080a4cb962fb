# expect: 3: Python syntax error
n_layer = 4
n_head = = 4
