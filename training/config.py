"""Typed configuration of the sales-readiness model (the ``training:`` section of a run config).

Loaded once at the edge (CLI / MLflow entry point) with ``TrainingConfig.model_validate(dict)``;
nothing here reads files or environment variables. A relative ``points_rules`` path resolves
against ``context={"base_dir": ...}`` when the loader passes one (the project file's folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

LABEL = "converted_within_h"
AS_OF = "as_of"
CENSORED = "censored"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BoosterConfig(_Strict):
    """LightGBM shape and learning parameters.

    The default shape is compact on purpose: exact TreeSHAP reasons cost ~ trees x leaves x depth
    per lead. Depth-2 trees of 3 leaves (pairwise interactions at most) at learning rate 0.1 ranked
    better than the earlier depth 4 / 15 leaves / 0.05 on the synthetic CRM at 20k leads (test AUC
    +0.001 to +0.008 on 4 of 4 seeds) and 6 small CRMs (1.5k-5k leads: mean +0.009), tied on X
    Education (0.873), and cost ~1/6 of the SHAP time per lead (``benchmarks/tree_shape.py``).
    """

    num_leaves: int = Field(3, ge=2, le=255)
    max_depth: int = Field(2, ge=-1)
    learning_rate: float = Field(0.1, gt=0, le=1)
    max_rounds: int = Field(400, ge=1)
    early_stopping_rounds: int = Field(30, ge=1)
    min_data_in_leaf: int | None = Field(
        None, ge=1, description="None: clip(max(n_train / 500, 3 / positive_rate), 20, 1000)"
    )
    feature_fraction: float = Field(0.7, gt=0, le=1)
    bagging_fraction: float = Field(0.9, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    lambda_l2: float = Field(5.0, ge=0)
    # Categorical regularisation: a free-text-like attribute (job titles: ~130 values) overfits
    # with LightGBM's defaults (cat_smooth 10, min_data_per_group 100, max_cat_threshold 32).
    # These values lifted test AUC on the synthetic CRM from 0.766 to 0.794 (20k leads) and from
    # 0.693 to 0.785 (5k leads); see the closing note of the session that set them.
    cat_smooth: float = Field(100.0, ge=0)
    cat_l2: float = Field(100.0, ge=0)
    min_data_per_group: int | None = Field(
        None, ge=1, description="fewest rows per categorical group in a split; None: clip(n_train / 50, 50, 500)"
    )
    max_cat_threshold: int = Field(8, ge=1, description="most categories on one side of a categorical split")
    max_cat_to_onehot: int = Field(4, ge=1)
    scale_pos_weight: float | Literal["balanced", "sqrt_balanced"] | None = Field(
        None,
        description="class imbalance: a number, 'balanced' (neg/pos), 'sqrt_balanced' or None; "
        "calibration afterwards restores true probabilities. Default None: with early stopping on "
        "log loss it ranked as well or better on the synthetic CRM and X Education",
    )
    num_threads: int = Field(
        0, ge=0, description="0: auto = 1 thread below 100k training rows (threads cost more than they "
        "save on small data), else all cores"
    )


class SearchConfig(_Strict):
    """Optional Optuna search over the booster's shape, bounded by trials and seconds."""

    n_trials: int = Field(0, ge=0, description="0 disables the search")
    timeout_seconds: float = Field(120.0, gt=0)
    max_num_leaves: int = Field(15, ge=2, description="upper bound kept small for SHAP cost")
    max_depth: int = Field(5, ge=1)


class LeakageThresholds(_Strict):
    """When a feature or the model looks too good to be true."""

    single_feature_auc: float = Field(0.95, gt=0.5, le=1)
    covered_feature_auc: float = Field(
        0.8, gt=0.5, le=1, description="AUC on the rows where a partly-missing feature is filled in"
    )
    importance_share: float = Field(0.5, gt=0, le=1)
    importance_share_auc: float = Field(0.85, gt=0.5, le=1)
    model_auc: float = Field(0.99, gt=0.5, le=1)
    model_over_best_baseline: float = Field(0.3, gt=0)
    strict: bool = Field(False, description="raise LeakageError when anything is flagged")


class TrainingConfig(_Strict):
    """Everything ``train_and_evaluate`` needs besides the data."""

    horizon_days: int | None = Field(
        None, ge=1, description="label horizon H; None: taken from the TrainingSet / spec"
    )
    label: str = LABEL
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of labelled as_of dates tested")
    validation_fraction: float = Field(
        0.2, gt=0, lt=1, description="share of the remaining as_of dates used for early stopping + calibration"
    )
    cv_folds: int = Field(5, ge=2, description="flat mode: StratifiedGroupKFold by lead_id")
    calibration: Literal["auto", "isotonic", "platt"] = Field(
        "auto", description="auto: isotonic when the calibration slice has >= 1000 rows and 100 positives, "
        "else platt; both never decrease in the margin (a platt slope fitted <= 0 is held at 0, with a warning)"
    )
    ece_bins: int = Field(10, ge=2)
    ece_binning: Literal["equal_mass", "equal_width"] = "equal_mass"
    segment_columns: list[str] = Field(default_factory=list)
    min_segment_size: int = Field(30, ge=1)
    bootstrap_samples: int = Field(200, ge=0)
    capacity_per_week: float | None = Field(None, gt=0, description="leads per week sales can work")
    capacity_share: float = Field(0.1, gt=0, le=1, description="used when weeks cannot be estimated")
    threshold_step: int = Field(1, ge=1, le=50)
    score_columns: list[str] = Field(
        default_factory=list, description="existing score columns to compare as baselines"
    )
    points_rules: Path | None = Field(
        None, description="hand-tuned points rules YAML scored next to the model in every run; "
        "None: the packaged default (training/default_points_rules.yaml)"
    )
    logistic_max_rows: int | None = Field(
        300_000, ge=1000, description="the logistic regression baseline is fitted on a stratified random sample of "
        "this many training rows when there are more (its design matrix bounds memory; noted in the run); "
        "None: every row"
    )
    refit: bool = Field(
        True, description="time-ordered runs: after the backtest, the registered model is refit with the backtest's "
        "trees on the training and validation slices and calibrated on the test slice (the latest labelled rows); "
        "false: the backtest model itself is registered. The run's figures are the backtest's either way"
    )
    booster: BoosterConfig = Field(default_factory=BoosterConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    leakage: LeakageThresholds = Field(default_factory=LeakageThresholds)
    make_plots: bool = True
    shap_sample: int = Field(2000, ge=10, description="rows used for the SHAP summary plot")
    seed: int = 42

    @field_validator("points_rules")
    @classmethod
    def _resolve_points_rules(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        base_dir = (info.context or {}).get("base_dir")
        value = value.expanduser() if value is not None else None  # ~/rules.yaml, as the data paths read it
        if value is not None and base_dir is not None and not value.is_absolute():
            return Path(base_dir) / value
        return value
