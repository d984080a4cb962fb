# expect: 4: A function definition
n_layer = 4

def scale(x):
    return x * 2

n_head = 4
