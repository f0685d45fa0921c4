"""One run's record, results/<RUN_ID>/metrics.json, as a typed object: written by the runner, read by the
summary, the report, the plots, resume and predict/export. Reading validates it once, so the readers use
fields, not `.get` chains; a file that is missing, unreadable or not a record reads as None.

Records written by earlier versions of the pipeline lack some sections (balanced accuracy, max_length,
precision_choice, ...): every section a run may lack is optional. Fields a task adds (early stopping,
class weights, search details) are kept as they are (`extra="allow"`).
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from core.files import read_json


class RunStatus(str, Enum):
    COMPLETE = "complete"  # trained (or fitted) and tested: metrics, predictions.csv and epochs.csv written
    FAILED = "failed"  # the task raised: `error` holds the first line, error.log the traceback


class Section(BaseModel):
    model_config = ConfigDict(extra="allow")


class Metrics(Section):
    accuracy: float | None = None
    f1_macro: float | None = None
    balanced_accuracy: float | None = None  # absent from records written before it was added
    confusion_matrix: list[list[int]] = []


class Timing(Section):
    train_seconds: float | None = None  # None for methods that do not train
    seconds_per_epoch: float | None = None
    test_seconds: float | None = None
    test_texts_per_second: float | None = None


class Parameters(Section):
    trainable: int | None = None
    total: int | None = None
    trainable_percent: float | None = None


class BestEpoch(Section):
    epoch: float  # fractional where a run validates within epochs
    validation_accuracy: float | None = None


class Data(Section):
    source: str | None = None
    sizes: dict[str, int] = {}
    class_names: list[str] = []
    max_length: int | None = None  # tokens; absent before it was recorded (the config's then applies)


class Memory(Section):
    peak_rss_mb: float | None = None  # the process's peak during the run
    peak_rss_increase_mb: float | None = None  # that peak minus the resident size at the run's start
    peak_cuda_mb: float | None = None


class Budget(Section):
    """What a training run consumed (tasks/finetune.py): the same unit for every method, whatever its budget."""

    optimizer_steps: int | None = None
    samples_seen: int | None = None  # training texts passed through the model, repeats counted
    train_flops: float | None = None  # estimated (evaluation/flops.py)


class SearchResult(Section):
    best_trial: int
    validation_accuracy: float
    params: dict[str, object]
    space: dict[str, dict] = {}  # per searched key: kind, and low/high/log or choices
    trials: dict[str, int] = {}  # trials by Optuna state
    folder: str


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())  # `model`, `model_number` are fields

    run_id: str
    base_run_id: str | None = None  # the run id without _s<seed>; absent from records before seeds
    task: str | None = None
    method: str | None = None
    model: str | None = None
    model_number: int | None = None
    variant: str | None = None
    label: str | None = None  # the task's `label:`, the method's name in reports; absent from records before it
    status: RunStatus
    error: str | None = None
    fingerprint: str | None = None  # pipeline/run_state.py: settings, data and hardware it ran under
    identity: dict | None = None  # what the fingerprint hashes; absent from records before it was recorded
    started_at: str | None = None
    finished_at: str | None = None
    total_seconds: float | None = None
    config: dict = {}  # the run's resolved settings (Run.resolved())
    search: SearchResult | None = None  # the trial its settings came from
    data: Data = Data()
    environment: dict = {}
    precision_choice: dict | None = None
    memory: Memory = Memory()
    metrics: Metrics | None = None  # complete runs only, from here on
    timing: Timing | None = None
    budget: Budget | None = None  # runs that train, recorded since equal budgets were checked
    parameters: Parameters | None = None
    best_epoch: BestEpoch | None = None
    precision: str | None = None
    resumed_from: dict | None = None

    @property
    def complete(self) -> bool:
        return self.status is RunStatus.COMPLETE

    @property
    def base_run(self) -> str:
        return self.base_run_id or self.run_id

    @property
    def seed(self) -> int | None:
        return self.config.get("seed")

    def dump(self) -> dict:
        """The JSON form metrics.json holds: the fields that were given (a section a run lacks stays absent)."""
        return self.model_dump(mode="json", exclude_unset=True)

    @classmethod
    def read(cls, path: Path) -> RunRecord | None:
        """The record in `path`, or None where there is none that parses as a record."""
        try:
            return cls.model_validate(read_json(path)) if Path(path).is_file() else None
        except ValidationError:
            return None
