"""The network model: a validated DAG held as arrays, its JSON loading, and the activation functions."""
