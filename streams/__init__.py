"""The stream workers: the batch and faust engines, partition positions, dead letters and
replay, all applying through the checkpoint protocol of cronstream.handlers."""
