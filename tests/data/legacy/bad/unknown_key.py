# expect: 3: Unknown key n_layers (did you mean n_layer?)
n_head = 4
n_layers = 6
