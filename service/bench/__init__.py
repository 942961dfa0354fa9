"""The proof: the GPU sanity benchmark run inside an environment, its verdict and its history."""
