"""The stream workers: the batch and faust engines, partition positions, dead letters."""
