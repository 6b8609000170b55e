"""makemore-sweep: experiment-tracking hyperparameter sweeps for the makemore BatchNorm MLP."""

__version__ = "0.1.0"
