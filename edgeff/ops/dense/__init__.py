"""The FF dense layer: normalize the input, Linear, ReLU; its code for every backend, one module each."""
