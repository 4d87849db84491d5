"""Closing the loop: late fraud labels joined to what was served, measured per model version.

``labels``   the FraudLabel contract: decoding a label, which kinds count as fraud.
``records``  the packed bytes kept per scored event and per label (and their numpy views).
``state``    the join in Redis: scored events and labels kept for the label horizon, each
             label joined to its score whichever arrives first, idempotently.
``metrics``  pure math on joined events: precision, recall, ROC-AUC, PR-AUC, amounts.
``gauges``   the Prometheus view of those metrics, refreshed from the stored state.
``loop``     the consumer loop of ``streamer monitor run`` (its own consumer group).
``report``   ``streamer monitor report``: the table and its JSON form.
``export``   ``streamer monitor export``: labelled events (and logged features) to Parquet.
"""
