# expect: 3: A loop
n_layer = 2
for i in range(3):
    n_layer = n_layer * 2
