# expect: 3: An expression statement (print(n_layer))
n_layer = 6
print(n_layer)
