# expect: 2: n_layer=six is not an int
n_layer = 'six'
