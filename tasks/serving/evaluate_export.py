"""Re-evaluate an exported model (artifacts/models/<run_id>) on the test split of the data it
was trained on: what `imdb-pipeline evaluate` runs (plain Python, no Prefect) and the
`evaluate` flow wraps."""

from __future__ import annotations

from pathlib import Path

from tasks.config import PipelineConfig
from tasks.data.processed import load_processed
from tasks.evaluation import evaluate
from tasks.layout import DataLayout
from tasks.serving.exported import ExportedModel
from tasks.serving.predict import Predictor


def evaluate_export(model: Path, data_dir: Path = Path("data")) -> dict:
    """Test metrics of an exported model folder (or a model file inside one), as a summary."""
    if not model.exists():
        raise FileNotFoundError(f"{model} not found: --model must be an exported model folder")
    export = ExportedModel(model if model.is_dir() else model.parent)
    if not export.card_path.exists():
        raise FileNotFoundError(
            f"{export.card_path} not found: --model must be an exported model folder"
        )
    card = export.card()
    if "config" not in card or "data_fingerprint" not in card:
        raise ValueError(f"{export.card_path} is unreadable or incomplete: re-export the model")
    config = PipelineConfig(**card["config"])
    data = load_processed(DataLayout(data_dir).processed / card["data_fingerprint"])
    if data is None:
        raise FileNotFoundError(
            f"tokenised data {card['data_fingerprint']} not found or damaged under "
            f"{data_dir}/processed: run `imdb-pipeline prepare` with the model's data settings"
        )
    predictor = Predictor(model)
    if predictor.saved_model is not None:
        raise ValueError(
            f"{model} is a SavedModel: evaluate takes its export folder (the folder above it)"
        )
    # Padded as the model's tokenizer says (cards of older models do not name the setting).
    config = config.model_copy(update={"mask_padding": predictor.pad_end})
    metrics = evaluate.evaluate(predictor.model, data.split_path("test"), config)
    return {
        "flow": "evaluate",
        "model": str(predictor.path),
        "test_metrics": metrics,
        "test_accuracy": metrics["accuracy"],
    }
