# expect: 2: A class definition
class Config:
    n_layer = 6
