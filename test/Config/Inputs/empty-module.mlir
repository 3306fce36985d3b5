// An empty module for tests that run fi-build-attention on it.
module {}
