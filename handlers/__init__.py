"""The handler protocol and registry (registry), the checkpoint protocol (applier) with
the records it applies (records), their decoding (decoding), the handler calls
(dispatch), failure classification (failures), outcomes and dead letters (outcomes,
dead_letters), and the built-in projection."""
