# expect: 2: An if statement
if True:
    n_layer = 6
