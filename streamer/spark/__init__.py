"""Batch scoring and feature building on Apache Spark, with the stream's own kernel.

``score(df)`` scores a DataFrame of TransactionEvents through ``DataFrame.mapInArrow``;
``build_features(history_df)`` builds each event's model input through
``groupBy("card_id").applyInArrow``. Both run the ``ScoringKernel`` that ``score-file``
and ``features build`` run, so they give the same answers on the same events;
``python -m streamer.spark score|features IN OUT`` is the ``spark-submit`` entry point.
Install with ``pip install 'streamer[spark]'`` (pyspark 4, Java 17). See docs/spark.md.
"""

from streamer.spark.features import build_features
from streamer.spark.scoring import score

__all__ = ["build_features", "score"]
