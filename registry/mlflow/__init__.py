"""MLflow as the registry's artifact store and, optionally, its mirror in MLflow's model registry.

The package shares MLflow's name inside ``adapterlab.registry`` only; ``import mlflow`` in its
modules is absolute and reaches the real MLflow, imported lazily.
"""
