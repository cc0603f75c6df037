"""Training the grad networks: the run's state, one step, and the loop around it."""
from .guards import StopRequest, TrainingError
from .loop import TrainResult, train
from .state import TrainState, build_model, learning_rate, save_state, setup_state
from .step import Batch, BatchSampler, Penalties, StepResult, TrainStep

__all__ = [
    "Batch", "BatchSampler", "Penalties", "StepResult", "StopRequest", "TrainResult", "TrainState", "TrainStep", "TrainingError",
    "build_model", "learning_rate", "save_state", "setup_state", "train",
]
