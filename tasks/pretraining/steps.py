"""Prefect task of the pretraining stage: word vectors for the embedding, cached by folder."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.config import PipelineConfig
from tasks.data.processed import ProcessedData
from tasks.layout import DataLayout
from tasks.pretraining.word2vec import WordVectors, learn_word_vectors


# No Prefect result cache: data/pretrained/<key>/ (data fingerprint, PRETRAIN settings, code)
# is the cache, reused only while its manifest verifies.
@task(name="learn_word_vectors", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def pretrain_word_vectors(
    config: PipelineConfig, data: ProcessedData, base: ProcessedData | None = None
) -> WordVectors | None:
    """word2vec vectors for the embedding (None when `word_vectors` is "none"); for a data
    version that adds accepted reviews to `base`, the archive's, perhaps carried over."""
    if config.word_vectors == "none":
        return None
    root = DataLayout(config.data_dir.resolve()).pretrained
    return learn_word_vectors(data, config, root, progress=get_run_logger().info, base=base)
