# expect: 3: A call to len()
n_layer = 4
batch_size = len("abcd")
