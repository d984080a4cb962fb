# expect: 2: Assigning to (n_layer, n_head)
n_layer, n_head = 6, 6
