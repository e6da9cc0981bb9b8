"""The pipeline's stages as plain functions, each with its Prefect task beside it."""

from tasks.core.environment import default_tensorflow_threads

# Before any module of the package imports TensorFlow, which reads it when it starts.
default_tensorflow_threads()
